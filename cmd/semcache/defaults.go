package main

import "github.com/semcache/semcache/embedding"

// localDefaultThreshold is the local embedder's default cosine-similarity
// threshold; embedding.LocalDefaultThreshold documents how it was measured.
const localDefaultThreshold = embedding.LocalDefaultThreshold
