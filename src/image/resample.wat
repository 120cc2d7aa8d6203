;; The two passes of resample.ts (Pillow's ImagingResampleHorizontal_8bpc / Vertical_8bpc) with
;; WebAssembly SIMD: the same 32-bit integer sums (i32x4.mul / i32x4.add wrap exactly like C `int`,
;; which Pillow's coefficients never overflow), the same clip8 (>> 22, then saturate to 0..255).
;; Build: node --import tsx scripts/build-wasm.ts  (writes resample_wasm.ts).
(module
  (memory (export "memory") 1)

  ;; RGB horizontal pass. Row y of the output (y < rows) reads source row at src + y * srcStride.
  ;; bounds: per output pixel (xmin, n) as i32; kk: ksize i32 taps per output pixel.
  ;; Each pixel is loaded and stored as 4 bytes (the 4th belongs to the next pixel and is
  ;; overwritten by it): the caller leaves 1 spare byte after the source and the output.
  (func (export "hpass3")
    (param $src i32) (param $srcStride i32) (param $rows i32) (param $outW i32)
    (param $bounds i32) (param $kk i32) (param $ksize i32) (param $out i32)
    (local $y i32) (local $xx i32) (local $row i32) (local $b i32)
    (local $p i32) (local $k i32) (local $n i32) (local $acc v128)
    (block $done_y
      (loop $loop_y
        (br_if $done_y (i32.ge_u (local.get $y) (local.get $rows)))
        (local.set $row (i32.add (local.get $src) (i32.mul (local.get $y) (local.get $srcStride))))
        (local.set $xx (i32.const 0))
        (block $done_x
          (loop $loop_x
            (br_if $done_x (i32.ge_u (local.get $xx) (local.get $outW)))
            (local.set $b (i32.add (local.get $bounds) (i32.shl (local.get $xx) (i32.const 3))))
            (local.set $p (i32.add (local.get $row) (i32.mul (i32.load (local.get $b)) (i32.const 3))))
            (local.set $n (i32.load offset=4 (local.get $b)))
            (local.set $k (i32.add (local.get $kk) (i32.shl (i32.mul (local.get $xx) (local.get $ksize)) (i32.const 2))))
            (local.set $acc (i32x4.splat (i32.const 2097152))) ;; 1 << (PRECISION_BITS - 1)
            (block $done_t
              (loop $loop_t
                (br_if $done_t (i32.eqz (local.get $n)))
                (local.set $acc
                  (i32x4.add (local.get $acc)
                    (i32x4.mul
                      (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero align=1 (local.get $p))))
                      (i32x4.splat (i32.load (local.get $k))))))
                (local.set $p (i32.add (local.get $p) (i32.const 3)))
                (local.set $k (i32.add (local.get $k) (i32.const 4)))
                (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                (br $loop_t)))
            (local.set $acc (i32x4.shr_s (local.get $acc) (i32.const 22)))
            (local.set $acc (i16x8.narrow_i32x4_s (local.get $acc) (local.get $acc)))
            (local.set $acc (i8x16.narrow_i16x8_u (local.get $acc) (local.get $acc)))
            (i32.store align=1 (local.get $out) (i32x4.extract_lane 0 (local.get $acc)))
            (local.set $out (i32.add (local.get $out) (i32.const 3)))
            (local.set $xx (i32.add (local.get $xx) (i32.const 1)))
            (br $loop_x)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $loop_y))))

  ;; hpass3 for row pairs (rows 2i and 2i + 1 share each tap's coefficient): `pairs` pairs.
  (func (export "hpass3x2")
    (param $src i32) (param $srcStride i32) (param $pairs i32) (param $outW i32)
    (param $bounds i32) (param $kk i32) (param $ksize i32) (param $out i32)
    (local $y i32) (local $xx i32) (local $row i32) (local $b i32) (local $outStride i32)
    (local $p i32) (local $k i32) (local $n i32) (local $w v128) (local $acc0 v128) (local $acc1 v128)
    (local $rowOut i32) (local $first1 i32)
    (local.set $outStride (i32.mul (local.get $outW) (i32.const 3)))
    (block $done_y
      (loop $loop_y
        (br_if $done_y (i32.ge_u (local.get $y) (local.get $pairs)))
        (local.set $row (i32.add (local.get $src) (i32.mul (i32.shl (local.get $y) (i32.const 1)) (local.get $srcStride))))
        (local.set $rowOut (local.get $out))
        (local.set $xx (i32.const 0))
        (block $done_x
          (loop $loop_x
            (br_if $done_x (i32.ge_u (local.get $xx) (local.get $outW)))
            (local.set $b (i32.add (local.get $bounds) (i32.shl (local.get $xx) (i32.const 3))))
            (local.set $p (i32.add (local.get $row) (i32.mul (i32.load (local.get $b)) (i32.const 3))))
            (local.set $n (i32.load offset=4 (local.get $b)))
            (local.set $k (i32.add (local.get $kk) (i32.shl (i32.mul (local.get $xx) (local.get $ksize)) (i32.const 2))))
            (local.set $acc0 (i32x4.splat (i32.const 2097152)))
            (local.set $acc1 (local.get $acc0))
            (block $done_t
              (loop $loop_t
                (br_if $done_t (i32.eqz (local.get $n)))
                (local.set $w (i32x4.splat (i32.load (local.get $k))))
                (local.set $acc0 (i32x4.add (local.get $acc0) (i32x4.mul
                  (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero align=1 (local.get $p))))
                  (local.get $w))))
                (local.set $acc1 (i32x4.add (local.get $acc1) (i32x4.mul
                  (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero align=1 (i32.add (local.get $p) (local.get $srcStride)))))
                  (local.get $w))))
                (local.set $p (i32.add (local.get $p) (i32.const 3)))
                (local.set $k (i32.add (local.get $k) (i32.const 4)))
                (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                (br $loop_t)))
            (local.set $acc0 (i32x4.shr_s (local.get $acc0) (i32.const 22)))
            (local.set $acc1 (i32x4.shr_s (local.get $acc1) (i32.const 22)))
            ;; lanes 0-3: row 2i, lanes 8-11: row 2i + 1
            (local.set $acc0 (i8x16.narrow_i16x8_u
              (i16x8.narrow_i32x4_s (local.get $acc0) (local.get $acc0))
              (i16x8.narrow_i32x4_s (local.get $acc1) (local.get $acc1))))
            (i32.store align=1 (local.get $out) (i32x4.extract_lane 0 (local.get $acc0)))
            (i32.store align=1 (i32.add (local.get $out) (local.get $outStride)) (i32x4.extract_lane 2 (local.get $acc0)))
            ;; remember the first byte of row 2i + 1: the spare 4th byte of row 2i's last pixel lands on it
            (local.set $first1 (select (local.get $first1) (i32x4.extract_lane 2 (local.get $acc0)) (local.get $xx)))
            (local.set $out (i32.add (local.get $out) (i32.const 3)))
            (local.set $xx (i32.add (local.get $xx) (i32.const 1)))
            (br $loop_x)))
        (i32.store8 (i32.add (local.get $rowOut) (local.get $outStride)) (local.get $first1))
        (local.set $out (i32.add (local.get $out) (local.get $outStride))) ;; skip the odd row
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $loop_y))))

  ;; Vertical pass over rows of `stride` bytes (any channel count), 16 bytes at a time. Output row
  ;; yy = sum over n rows from src + ymin * stride. The last block of a row may run past its end:
  ;; those bytes land on the next output row before it is computed, so the caller leaves 15 spare
  ;; bytes after the source and the output.
  (func (export "vpass")
    (param $src i32) (param $stride i32) (param $outH i32)
    (param $bounds i32) (param $kk i32) (param $ksize i32) (param $out i32)
    (local $yy i32) (local $i i32) (local $t i32) (local $n i32) (local $p i32) (local $k i32)
    (local $kbase i32) (local $rowStart i32) (local $o i32)
    (local $v v128) (local $w v128) (local $lo v128) (local $hi v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (block $done_y
      (loop $loop_y
        (br_if $done_y (i32.ge_u (local.get $yy) (local.get $outH)))
        (local.set $rowStart
          (i32.add (local.get $src) (i32.mul (i32.load (i32.add (local.get $bounds) (i32.shl (local.get $yy) (i32.const 3)))) (local.get $stride))))
        (local.set $n (i32.load offset=4 (i32.add (local.get $bounds) (i32.shl (local.get $yy) (i32.const 3)))))
        (local.set $kbase (i32.add (local.get $kk) (i32.shl (i32.mul (local.get $yy) (local.get $ksize)) (i32.const 2))))
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $yy) (local.get $stride))))
        (local.set $i (i32.const 0))
        (block $done_i
          (loop $loop_i
            (br_if $done_i (i32.ge_u (local.get $i) (local.get $stride)))
            (local.set $a0 (i32x4.splat (i32.const 2097152)))
            (local.set $a1 (local.get $a0))
            (local.set $a2 (local.get $a0))
            (local.set $a3 (local.get $a0))
            (local.set $p (i32.add (local.get $rowStart) (local.get $i)))
            (local.set $k (local.get $kbase))
            (local.set $t (local.get $n))
            (block $done_t
              (loop $loop_t
                (br_if $done_t (i32.eqz (local.get $t)))
                (local.set $v (v128.load align=1 (local.get $p)))
                (local.set $w (i32x4.splat (i32.load (local.get $k))))
                (local.set $lo (i16x8.extend_low_i8x16_u (local.get $v)))
                (local.set $hi (i16x8.extend_high_i8x16_u (local.get $v)))
                (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $lo)) (local.get $w))))
                (local.set $a1 (i32x4.add (local.get $a1) (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $lo)) (local.get $w))))
                (local.set $a2 (i32x4.add (local.get $a2) (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $hi)) (local.get $w))))
                (local.set $a3 (i32x4.add (local.get $a3) (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $hi)) (local.get $w))))
                (local.set $p (i32.add (local.get $p) (local.get $stride)))
                (local.set $k (i32.add (local.get $k) (i32.const 4)))
                (local.set $t (i32.sub (local.get $t) (i32.const 1)))
                (br $loop_t)))
            (v128.store align=1 (i32.add (local.get $o) (local.get $i))
              (i8x16.narrow_i16x8_u
                (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a0) (i32.const 22)) (i32x4.shr_s (local.get $a1) (i32.const 22)))
                (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a2) (i32.const 22)) (i32x4.shr_s (local.get $a3) (i32.const 22)))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $loop_i)))
        (local.set $yy (i32.add (local.get $yy) (i32.const 1)))
        (br $loop_y))))
)
