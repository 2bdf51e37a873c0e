package semantic

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestFaultLogThrottles(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	f := newFaultLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	for range 5 {
		f.warn("semantic search failed", "err", "down")
	}
	f.warn("cache store failed", "err", "down") // another kind is not held back
	if got := strings.Count(buf.String(), "semantic search failed"); got != 1 {
		t.Errorf("%d lines for 5 faults within the interval, want 1:\n%s", got, buf.String())
	}
	now = now.Add(faultLogInterval)
	f.warn("semantic search failed", "err", "down")
	if !strings.Contains(buf.String(), "suppressed_since_last_line=4") {
		t.Errorf("the next line does not count the 4 suppressed faults:\n%s", buf.String())
	}
	if got := strings.Count(buf.String(), "cache store failed"); got != 1 {
		t.Errorf("other kind: %d lines, want 1", got)
	}
}
