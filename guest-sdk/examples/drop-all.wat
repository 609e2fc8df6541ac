;; drop-all.wat: drops every series of every scrape with a MASK result (ABI v1), and shows the
;; log import and an error result.
;;
;; Memory layout: bytes 16..64 hold constant texts (data segments); the input buffer starts at
;; 1024 and runs to the end of memory. The keep bitmap is written over the start of the input
;; buffer: the batch is no longer needed once promrelay_process has read its series count, and the
;; output stays valid until the host's next call, as the ABI requires.
(module
  (import "promrelay" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)

  (data (i32.const 16) "drop-all ready")                  ;; 14 bytes at 16
  (data (i32.const 32) "batch shorter than its header")   ;; 29 bytes at 32

  (global $output_ptr (mut i32) (i32.const 0))
  (global $output_len (mut i32) (i32.const 0))

  (func (export "promrelay_abi_version") (result i32)
    i32.const 1)

  (func (export "promrelay_reserve") (param $len i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1024))

  (func (export "promrelay_init") (param $len i32) (result i32)
    ;; log(level 2 = info, "drop-all ready")
    (call $log (i32.const 2) (i32.const 16) (i32.const 14))
    (global.set $output_len (i32.const 0))
    i32.const 0)

  (func (export "promrelay_process") (param $len i32) (result i32)
    (local $series i32)
    (local $mask_len i32)
    ;; A batch has a 48-byte header; anything shorter is an error (-2, text at 32).
    (if (i32.lt_u (local.get $len) (i32.const 48))
      (then
        (global.set $output_ptr (i32.const 32))
        (global.set $output_len (i32.const 29))
        (return (i32.const -2))))
    ;; series_count is the u32 at header offset 16.
    (local.set $series (i32.load offset=16 (i32.const 1024)))
    ;; ceil(series_count / 8) bytes, all zero: keep nothing.
    (local.set $mask_len
      (i32.shr_u (i32.add (local.get $series) (i32.const 7)) (i32.const 3)))
    (memory.fill (i32.const 1024) (i32.const 0) (local.get $mask_len))
    (global.set $output_ptr (i32.const 1024))
    (global.set $output_len (local.get $mask_len))
    ;; 1 = MASK
    i32.const 1)

  (func (export "promrelay_output_ptr") (result i32)
    global.get $output_ptr)

  (func (export "promrelay_output_len") (result i32)
    global.get $output_len))
