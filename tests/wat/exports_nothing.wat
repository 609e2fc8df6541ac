;; Hostile: a module that exports nothing; the load must be refused listing every missing export.
(module
  (func $idle))
