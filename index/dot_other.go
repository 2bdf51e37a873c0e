//go:build !amd64

package index

// useAVX2 is false off amd64; the kernels are the portable Go loops.
const useAVX2 = false

func dotKernel(a, b []float32) float32 { return dotGo(a, b) }

func dotInt8(a, b []int8) int32 { return dotInt8Go(a, b) }

func prefetch([]int8) {}

func prefetchFloats([]float32) {}
