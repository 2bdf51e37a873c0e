// Package benchmarks measures semcache on labelled data: threshold tuning and query-log replay.
package benchmarks
