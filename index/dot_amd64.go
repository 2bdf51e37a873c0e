package index

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// useAVX2 selects the AVX2(+FMA) kernels; it is read once at start-up.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotAVX2 is implemented in dot_amd64.s. It requires len(b) >= len(a).
//
//go:noescape
func dotAVX2(a, b []float32) float32

// dotInt8AVX2 is implemented in dot_amd64.s. It requires len(b) >= len(a).
//
//go:noescape
func dotInt8AVX2(a, b []int8) int32

// prefetchLines is implemented in dot_amd64.s.
//
//go:noescape
func prefetchLines(p *int8, n uintptr)

// dotKernel returns the dot product of a[:n] and b[:n], n = min(len(a),
// len(b)), with the AVX2+FMA kernel when the CPU has both and the portable
// Go kernel otherwise.
func dotKernel(a, b []float32) float32 {
	n := min(len(a), len(b))
	if useAVX2 {
		return dotAVX2(a[:n], b[:n])
	}
	return dotGo(a, b)
}

// dotInt8 returns the dot product of the int8 codes a[:n] and b[:n], n =
// min(len(a), len(b)), as an int32.
func dotInt8(a, b []int8) int32 {
	n := min(len(a), len(b))
	if useAVX2 {
		return dotInt8AVX2(a[:n], b[:n])
	}
	return dotInt8Go(a, b)
}

// prefetch asks the CPU to bring the bytes of codes into cache ahead of
// their use.
func prefetch(codes []int8) {
	if useAVX2 && len(codes) > 0 {
		prefetchLines(unsafe.SliceData(codes), uintptr(len(codes)))
	}
}

// prefetchFloats is prefetch for a float32 vector.
func prefetchFloats(v []float32) {
	if useAVX2 && len(v) > 0 {
		prefetchLines((*int8)(unsafe.Pointer(unsafe.SliceData(v))), uintptr(4*len(v)))
	}
}
