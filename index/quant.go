package index

import "math"

// Scalar quantisation of unit vectors to int8 codes, used by HNSW to walk
// the graph on 1 byte per component instead of 4 (a 384-d vector is six
// 64-byte cache lines instead of 24), with the final candidates re-ranked on
// the exact float32 vectors. The scheme is symmetric per-vector max scaling:
//
//	scale = max_i |v_i| / 127,  code_i = round(v_i / scale)
//
// so v_i ≈ scale·code_i with an error of at most scale/2 per component, and
// dot(a, b) ≈ scale_a·scale_b·Σ code_a_i·code_b_i.

// quantizeInto writes v's int8 codes into dst (len(dst) == len(v)) and
// returns the scale. A zero vector gets scale 0 and zero codes.
func quantizeInto(dst []int8, v []float32) float32 {
	var m float32
	for _, x := range v {
		m = max(m, float32(math.Abs(float64(x))))
	}
	if m == 0 {
		clear(dst)
		return 0
	}
	scale := m / 127
	inv := 1 / scale
	for i, x := range v {
		c := math.Round(float64(x * inv))
		dst[i] = int8(min(max(c, -127), 127))
	}
	return scale
}

// dotInt8Go is the portable int8 kernel; tests check dotInt8 against it.
func dotInt8Go(a, b []int8) int32 {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var s0, s1 int32
	i := 0
	for ; i+2 <= n; i += 2 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
	}
	if i < n {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1
}
