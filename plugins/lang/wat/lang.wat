;; The `lang` plugin in hand-written WebAssembly text: the predicate and filter every language in
;; plugins/lang/ implements, with the component model's canonical ABI spelled out.
;;
;; predicate args [header, value]: matches when the request's header equals value.
;; filter args [tag]: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is answered
;; 203 "reply from TAG"; the response gets `x-tag-response: TAG:STATUS`.
;;
;; routerd gives each route's args once per instance (`configure`, under a number the calls then
;; name). `configure` keeps them where the host wrote them and records (ptr, count) by that
;; number: the predicate's table at 1024, the filter's at 1536, 64 routes each.
;;
;; Memory is a bump heap from $floor (2048 at first), reset to it by every export's post-return
;; function (routerd has read the result by then), so a reused instance does not grow; `configure`
;; raises $floor over the args it keeps.
(module
  (import "cm32p2|router:plugin/request@0.3" "header"
    (func $req_header (param i32 i32 i32)))
  (import "cm32p2|router:plugin/response@0.3" "status"
    (func $resp_status (result i32)))

  (memory (export "cm32p2_memory") 1)
  (global $floor (mut i32) (i32.const 2048))
  (global $heap (mut i32) (i32.const 2048))

  (data (i32.const 16) "x-reply")
  (data (i32.const 32) "x-tag")
  (data (i32.const 48) "x-tag-response")
  (data (i32.const 64) "expected 2 args: [header, value]")
  (data (i32.const 112) "expected 1 arg: [tag]")
  (data (i32.const 144) "reply from ")
  (data (i32.const 160) "at most 64 routes")

  ;; Bump allocation, growing memory when the heap runs past it.
  (func $alloc (param $align i32) (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.lt_s
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const 0))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "cm32p2_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (call $alloc (local.get $align) (local.get $new_size)))
    (if (local.get $old)
      (then
        (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $new_size)
            (i32.lt_u (local.get $old_size) (local.get $new_size))))))
    (local.get $ptr))

  (func (export "cm32p2_initialize"))

  (func $reset (param i32) (global.set $heap (global.get $floor)))
  (export "cm32p2|router:plugin/predicate@0.3|configure_post" (func $reset))
  (export "cm32p2|router:plugin/predicate@0.3|matches_post" (func $reset))
  (export "cm32p2|router:plugin/filter@0.3|configure_post" (func $reset))
  (export "cm32p2|router:plugin/filter@0.3|on-request_post" (func $reset))
  (export "cm32p2|router:plugin/filter@0.3|on-response_post" (func $reset))

  ;; result<_, string>: tag byte at 0, the error string's (ptr, len) at 4 and 8.
  (func $validation (param $ok i32) (param $msg i32) (param $len i32) (result i32)
    (local $ret i32)
    (local.set $ret (call $alloc (i32.const 4) (i32.const 12)))
    (i32.store8 (local.get $ret) (i32.eqz (local.get $ok)))
    (i32.store offset=4 (local.get $ret) (local.get $msg))
    (i32.store offset=8 (local.get $ret) (local.get $len))
    (local.get $ret))

  ;; Keeps a route's args: (ptr, count) at $table + config * 8, and the heap's floor raised over
  ;; them (the host wrote them on the heap just before the call). Returns the validation result.
  (func $keep (param $table i32) (param $config i32) (param $args i32) (param $n i32)
    (param $want i32) (param $msg i32) (param $len i32) (result i32)
    (if (i32.ne (local.get $n) (local.get $want))
      (then (return (call $validation (i32.const 0) (local.get $msg) (local.get $len)))))
    (if (i32.ge_u (local.get $config) (i32.const 64))
      (then (return (call $validation (i32.const 0) (i32.const 160) (i32.const 17)))))
    (i32.store (i32.add (local.get $table) (i32.shl (local.get $config) (i32.const 3)))
      (local.get $args))
    (i32.store offset=4 (i32.add (local.get $table) (i32.shl (local.get $config) (i32.const 3)))
      (local.get $n))
    (global.set $floor (global.get $heap))
    (call $validation (i32.const 1) (i32.const 0) (i32.const 0)))

  (func (export "cm32p2|router:plugin/predicate@0.3|configure")
    (param $config i32) (param $args i32) (param $n i32) (result i32)
    (call $keep (i32.const 1024) (local.get $config) (local.get $args) (local.get $n)
      (i32.const 2) (i32.const 64) (i32.const 32)))

  ;; result<phases, string>: on success the flags byte at 4 (both phases: 3).
  (func (export "cm32p2|router:plugin/filter@0.3|configure")
    (param $config i32) (param $args i32) (param $n i32) (result i32)
    (local $ret i32)
    (local.set $ret
      (call $keep (i32.const 1536) (local.get $config) (local.get $args) (local.get $n)
        (i32.const 1) (i32.const 112) (i32.const 21)))
    (if (i32.eqz (i32.load8_u (local.get $ret)))
      (then (i32.store8 offset=4 (local.get $ret) (i32.const 3))))
    (local.get $ret))

  ;; A kept route's args: (ptr, count) from $table, count 0 for a config never given.
  (func $args (param $table i32) (param $config i32) (result i32)
    (if (i32.ge_u (local.get $config) (i32.const 64)) (then (return (i32.const 0))))
    (i32.load (i32.add (local.get $table) (i32.shl (local.get $config) (i32.const 3)))))
  (func $count (param $table i32) (param $config i32) (result i32)
    (if (i32.ge_u (local.get $config) (i32.const 64)) (then (return (i32.const 0))))
    (i32.load offset=4 (i32.add (local.get $table) (i32.shl (local.get $config) (i32.const 3)))))

  (func $bytes_eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $alen)))
        (if (i32.ne
              (i32.load8_u (i32.add (local.get $a) (local.get $i)))
              (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; list<string> elements are (ptr, len) pairs; option<string> is a tag byte, then (ptr, len).
  (func (export "cm32p2|router:plugin/predicate@0.3|matches")
    (param $config i32) (result i32)
    (local $args i32) (local $n i32) (local $found i32)
    (local.set $args (call $args (i32.const 1024) (local.get $config)))
    (local.set $n (call $count (i32.const 1024) (local.get $config)))
    (if (i32.ne (local.get $n) (i32.const 2)) (then (return (i32.const 0))))
    (local.set $found (call $alloc (i32.const 4) (i32.const 12)))
    (call $req_header
      (i32.load (local.get $args)) (i32.load offset=4 (local.get $args)) (local.get $found))
    (if (i32.eqz (i32.load8_u (local.get $found))) (then (return (i32.const 0))))
    (call $bytes_eq
      (i32.load offset=4 (local.get $found)) (i32.load offset=8 (local.get $found))
      (i32.load offset=8 (local.get $args)) (i32.load offset=12 (local.get $args))))

  ;; header-op `set(name, value)`: tag 0, then the two strings, 20 bytes in all.
  (func $set_op (param $name i32) (param $name_len i32) (param $value i32) (param $value_len i32)
    (result i32)
    (local $op i32)
    (local.set $op (call $alloc (i32.const 4) (i32.const 20)))
    (i32.store8 (local.get $op) (i32.const 0))
    (i32.store offset=4 (local.get $op) (local.get $name))
    (i32.store offset=8 (local.get $op) (local.get $name_len))
    (i32.store offset=12 (local.get $op) (local.get $value))
    (i32.store offset=16 (local.get $op) (local.get $value_len))
    (local.get $op))

  ;; request-action: tag byte, then at 4 either request-edits {headers, path, query} or
  ;; reply {status, headers, body}.
  (func (export "cm32p2|router:plugin/filter@0.3|on-request")
    (param $config i32) (result i32)
    (local $args i32) (local $n i32)
    (local $tag i32) (local $tag_len i32) (local $found i32) (local $ret i32)
    (local $header i32) (local $body i32)
    (local.set $args (call $args (i32.const 1536) (local.get $config)))
    (local.set $n (call $count (i32.const 1536) (local.get $config)))
    (if (local.get $n)
      (then
        (local.set $tag (i32.load (local.get $args)))
        (local.set $tag_len (i32.load offset=4 (local.get $args)))))
    (local.set $found (call $alloc (i32.const 4) (i32.const 12)))
    (call $req_header (i32.const 16) (i32.const 7) (local.get $found))
    (local.set $ret (call $alloc (i32.const 4) (i32.const 36)))
    (if (i32.load8_u (local.get $found))
      (then
        (i32.store8 (local.get $ret) (i32.const 1))
        (i32.store16 offset=4 (local.get $ret) (i32.const 203))
        (local.set $header (call $alloc (i32.const 4) (i32.const 16)))
        (i32.store (local.get $header) (i32.const 32))
        (i32.store offset=4 (local.get $header) (i32.const 5))
        (i32.store offset=8 (local.get $header) (local.get $tag))
        (i32.store offset=12 (local.get $header) (local.get $tag_len))
        (i32.store offset=8 (local.get $ret) (local.get $header))
        (i32.store offset=12 (local.get $ret) (i32.const 1))
        (local.set $body
          (call $alloc (i32.const 1) (i32.add (i32.const 11) (local.get $tag_len))))
        (memory.copy (local.get $body) (i32.const 144) (i32.const 11))
        (memory.copy
          (i32.add (local.get $body) (i32.const 11)) (local.get $tag) (local.get $tag_len))
        (i32.store offset=16 (local.get $ret) (local.get $body))
        (i32.store offset=20 (local.get $ret) (i32.add (i32.const 11) (local.get $tag_len))))
      (else
        (i32.store8 (local.get $ret) (i32.const 0))
        (i32.store offset=4 (local.get $ret)
          (call $set_op (i32.const 32) (i32.const 5) (local.get $tag) (local.get $tag_len)))
        (i32.store offset=8 (local.get $ret) (i32.const 1))
        (i32.store8 offset=12 (local.get $ret) (i32.const 0))
        (i32.store8 offset=24 (local.get $ret) (i32.const 0))))
    (local.get $ret))

  ;; response-edits: option<u16> status (tag byte, value at 2), then headers (ptr, len) at 4.
  (func (export "cm32p2|router:plugin/filter@0.3|on-response")
    (param $config i32) (result i32)
    (local $args i32) (local $n i32)
    (local $tag i32) (local $tag_len i32) (local $status i32) (local $digits i32)
    (local $buf i32) (local $pos i32) (local $ret i32)
    (local.set $args (call $args (i32.const 1536) (local.get $config)))
    (local.set $n (call $count (i32.const 1536) (local.get $config)))
    (if (local.get $n)
      (then
        (local.set $tag (i32.load (local.get $args)))
        (local.set $tag_len (i32.load offset=4 (local.get $args)))))
    (local.set $status (call $resp_status))
    (local.set $digits
      (i32.add (i32.const 1)
        (i32.add (i32.ge_u (local.get $status) (i32.const 10))
          (i32.add (i32.ge_u (local.get $status) (i32.const 100))
            (i32.add (i32.ge_u (local.get $status) (i32.const 1000))
              (i32.ge_u (local.get $status) (i32.const 10000)))))))
    (local.set $buf
      (call $alloc (i32.const 1)
        (i32.add (i32.add (local.get $tag_len) (i32.const 1)) (local.get $digits))))
    (memory.copy (local.get $buf) (local.get $tag) (local.get $tag_len))
    (i32.store8 (i32.add (local.get $buf) (local.get $tag_len)) (i32.const 58))
    (local.set $pos
      (i32.add (i32.add (local.get $buf) (local.get $tag_len)) (local.get $digits)))
    (loop $digit
      (i32.store8 (local.get $pos)
        (i32.add (i32.const 48) (i32.rem_u (local.get $status) (i32.const 10))))
      (local.set $status (i32.div_u (local.get $status) (i32.const 10)))
      (local.set $pos (i32.sub (local.get $pos) (i32.const 1)))
      (br_if $digit (local.get $status)))
    (local.set $ret (call $alloc (i32.const 4) (i32.const 12)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret)
      (call $set_op (i32.const 48) (i32.const 14) (local.get $buf)
        (i32.add (i32.add (local.get $tag_len) (i32.const 1)) (local.get $digits))))
    (i32.store offset=8 (local.get $ret) (i32.const 1))
    (local.get $ret))
)
