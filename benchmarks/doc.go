// Package benchmarks measures semcache on labelled data: threshold tuning, query-log replay and bounded load.
package benchmarks
