;; pass.wat: the smallest complete promrelay filter (ABI v1). It keeps every scrape unchanged.
;;
;; Memory layout: the input buffer starts at address 1024 and runs to the end of linear memory;
;; promrelay_reserve grows memory until the buffer holds the requested length. Nothing is ever
;; written as output, so promrelay_output_ptr/len both return 0.
(module
  (memory (export "memory") 1)

  (func (export "promrelay_abi_version") (result i32)
    i32.const 1)

  ;; Make room for $len bytes at address 1024 and return that address (0 = cannot).
  (func (export "promrelay_reserve") (param $len i32) (result i32)
    (local $pages i32)
    ;; pages needed = ceil((1024 + len) / 65536)
    (local.set $pages
      (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1024))

  ;; The config JSON is in the input buffer; this filter has none to read. 0 = ok.
  (func (export "promrelay_init") (param $len i32) (result i32)
    i32.const 0)

  ;; 0 = PASS: the batch goes on unchanged.
  (func (export "promrelay_process") (param $len i32) (result i32)
    i32.const 0)

  (func (export "promrelay_output_ptr") (result i32)
    i32.const 0)

  (func (export "promrelay_output_len") (result i32)
    i32.const 0))
