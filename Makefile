# semcache — the two commands in the README are `make run` and `make test`.
GO ?= go
DATA ?= ../shared/data

REPLAY_ADDR ?= 127.0.0.1:18080

.PHONY: run test build vet fmt bench tune replay sdktest

## run: the proxy on the embedded default (in-process LRU + HNSW, local embedder);
## with no SEMCACHE_UPSTREAM/--upstream it answers from the built-in simulated upstream.
run: build
	exec ./bin/semcache serve $(ARGS)

## test: the whole test suite with the race detector, after gofmt and vet, then
## the Node tests (sdktest/) when node and npm are installed. Its
## output is plain go test's, then one line per reason tests were skipped (e.g.
## the RediSearch module not configured), which go test alone does not say;
## go test's exit code is kept (internal/testsummary).
test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@$(GO) build -o bin/testsummary ./internal/testsummary
	./bin/testsummary -go $(GO) -- -race -count=1 ./...
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory sdktest; \
	else echo "node or npm is not installed: the Node tests (sdktest/: OpenAI Node SDK, dashboard in Chromium) are skipped"; fi

build:
	$(GO) build -o bin/semcache ./cmd/semcache

## sdktest: the official OpenAI Node SDK (pinned in sdktest/package.json) against a
## freshly built `semcache serve` on a free loopback port, and the dashboard in
## headless Chromium (skipped without /usr/bin/chromium); needs node and npm.
sdktest:
	cd sdktest && npm ci --no-audit --no-fund && node --test

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

## replay: start a fresh proxy on REPLAY_ADDR (simulated upstream, 20 ms latency), replay
## BANKING77's test split through it in order, stop it. Fails if that proxy was not the one answering.
replay: build
	@./bin/semcache serve --listen $(REPLAY_ADDR) --sim-latency 20ms --sim-per-token-latency 0s --log-level warn & pid=$$!; \
	./bin/semcache bench replay --target http://$(REPLAY_ADDR)/v1 --data $(DATA)/banking77/test.csv $(ARGS); rc=$$?; \
	if ! kill $$pid 2>/dev/null; then echo "make replay: the proxy started for the replay was not running (is $(REPLAY_ADDR) taken? set REPLAY_ADDR); the figures above are not valid" >&2; exit 1; fi; \
	wait $$pid 2>/dev/null; exit $$rc
