package semantic

import (
	"log/slog"
	"sync"
	"time"
)

// faultLogInterval is the shortest time between two log lines about the
// same kind of cache fault. A dead Redis or embedder fails every request;
// one line per request would flood the log, so each kind is logged once per
// interval with the number of faults it stands for (the stats count every
// one).
const faultLogInterval = 10 * time.Second

// faultLog logs cache faults at most once per faultLogInterval per kind. It
// is safe for concurrent use.
type faultLog struct {
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex
	// last and suppressed, by fault kind, are guarded by mu.
	last       map[string]time.Time
	suppressed map[string]int
}

func newFaultLog(log *slog.Logger, now func() time.Time) *faultLog {
	return &faultLog{log: log, now: now, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// warn logs msg with args, or counts it when a line of the same msg was
// logged less than faultLogInterval ago.
func (f *faultLog) warn(msg string, args ...any) {
	now := f.now()
	f.mu.Lock()
	if last, ok := f.last[msg]; ok && now.Sub(last) < faultLogInterval {
		f.suppressed[msg]++
		f.mu.Unlock()
		return
	}
	n := f.suppressed[msg]
	f.last[msg] = now
	f.suppressed[msg] = 0
	f.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last_line", n)
	}
	f.log.Warn(msg, args...) // outside the lock: the handler may block
}
