;; A MASK filter that keeps every series (bitmap bytes 0xFF): the same as PASS (ABI.md §4.5).
;; Part of the promrelay filter engine tests (host/src/filter/tests.rs, tests/e2e/filters.rs).
(module
  (memory (export "memory") 2)
  (global $out_ptr (mut i32) (i32.const 0))
  (global $out_len (mut i32) (i32.const 0))
  (func (export "promrelay_abi_version") (result i32) i32.const 1)
  ;; The input buffer starts at 64 KiB and grows with the input.
  (func (export "promrelay_reserve") (param $len i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 65536)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    i32.const 65536)
  (func (export "promrelay_output_ptr") (result i32) global.get $out_ptr)
  (func (export "promrelay_output_len") (result i32) global.get $out_len)
  (func (export "promrelay_init") (param i32) (result i32) i32.const 0)
  (func (export "promrelay_process") (param $len i32) (result i32)
    (local $bytes i32)
    ;; series_count is the u32 at offset 16 of the batch header.
    (local.set $bytes
      (i32.shr_u (i32.add (i32.load (i32.const 65552)) (i32.const 7)) (i32.const 3)))
    (if (i32.gt_u (local.get $bytes) (i32.const 60000))
      (then
        (global.set $out_ptr (i32.const 0))
        (global.set $out_len (i32.const 14))
        (return (i32.const -2))))
    (memory.fill (i32.const 1024) (i32.const 0xFF) (local.get $bytes))
    (global.set $out_ptr (i32.const 1024))
    (global.set $out_len (local.get $bytes))
    i32.const 1)
  (data (i32.const 0) "too many series")
)
