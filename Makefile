# semcache — the two commands in the README are `make run` and `make test`.
GO ?= go
DATA ?= ../shared/data

.PHONY: run test build vet fmt bench tune replay

## run: the proxy on the embedded default (in-process LRU + HNSW, local embedder);
## with no SEMCACHE_UPSTREAM/--upstream it answers from the built-in simulated upstream.
run:
	$(GO) run ./cmd/semcache serve $(ARGS)

## test: the whole test suite with the race detector, after gofmt and vet.
test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

build:
	$(GO) build -o bin/semcache ./cmd/semcache

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: Go benchmarks of the hot paths (HNSW recall and latency, embedder).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## tune: threshold sweep of the local embedder on BANKING77 (train warms, test queries).
tune:
	$(GO) run ./cmd/semcache bench tune --warm $(DATA)/banking77/train.csv --queries $(DATA)/banking77/test.csv \
		--format intents --text-col text --label-col category $(ARGS)
