package semantic

import (
	"fmt"
	"os"
)

// loadJSONFile reads path and parses it with parse, the shared body of
// LoadPricing and LoadRules. Errors name what is loaded ("pricing",
// "rules") and, for a file that does not parse, the path.
func loadJSONFile[T any](path, what string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, fmt.Errorf("semantic: load %s: %w", what, err)
	}
	v, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf("semantic: load %s %s: %w", what, path, err)
	}
	return v, nil
}

// parseJSON is the shared body of ParsePricing and ParseRules: parse, with
// errors prefixed by what is parsed.
func parseJSON[T any](data []byte, what string, parse func([]byte) (T, error)) (T, error) {
	v, err := parse(data)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("semantic: parse %s: %w", what, err)
	}
	return v, nil
}

// mustParseJSON parses an embedded default at start-up; a default that
// does not parse panics, and so fails every test of the package.
func mustParseJSON[T any](data []byte, parse func([]byte) (T, error)) T {
	v, err := parse(data)
	if err != nil {
		panic(err)
	}
	return v
}
