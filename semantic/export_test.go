package semantic

// BudgetVerdicts returns RuleBudget's verdict counts per stratum: right
// and wrong, summed over the bins (nil state: zeros).
func (c *Cache) BudgetVerdicts() (right, wrong [3]float64) {
	if c.adaptive == nil || c.adaptive.budget == nil {
		return
	}
	b := c.adaptive.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range strata {
		for i := range b.bins {
			right[k] += b.right[k][i]
			wrong[k] += b.wrong[k][i]
		}
	}
	return
}

// EncodeEntry returns e in the form the cache stores it (entrycodec.go),
// for tests and benchmarks that fill a store directly.
func EncodeEntry(e Entry) []byte { return encodeEntry(&e) }
