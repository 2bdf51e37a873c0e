package index

// SetVecsimInfoCheck turns verifyIndex's FT.DEBUG VECSIM_INFO check on or
// off, as on a server that disables debug commands, and returns a function
// that restores it. Not safe for concurrent use with NewRedis.
func SetVecsimInfoCheck(on bool) (restore func()) {
	old := useVecsimInfo
	useVecsimInfo = on
	return func() { useVecsimInfo = old }
}
