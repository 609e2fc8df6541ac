;; Hostile: imports WASI and an unknown host function; the load must be refused naming both.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "sneaky" (func))
  (memory (export "memory") 1)
  (func (export "promrelay_abi_version") (result i32) i32.const 1)
  (func (export "promrelay_reserve") (param i32) (result i32) i32.const 1024)
  (func (export "promrelay_init") (param i32) (result i32) i32.const 0)
  (func (export "promrelay_process") (param i32) (result i32) i32.const 0)
  (func (export "promrelay_output_ptr") (result i32) i32.const 0)
  (func (export "promrelay_output_len") (result i32) i32.const 0))
