// Package index holds semcache's vector indexes and exact stores.
package index
