# prepcast — make help lists the targets.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GO      ?= go
# A count, not a duration: with a duration, Go before 1.27 can fail a fuzz
# target with "context deadline exceeded" when the time runs out while a
# worker is busy (go.dev/issue/75804), which is no finding.
FUZZTIME ?= 30000x
UPLINK_SCALE ?= 1

# What "make dist" builds: every system a difusor may run for package mode.
DIST_PLATFORMS ?= linux/amd64 linux/arm64 freebsd/amd64 freebsd/arm64 windows/amd64 windows/arm64

.PHONY: dist help build demo test test-short fuzz vet bench bench-cut bench-push bench-scale bench-wan bench-uplink clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-12s %s\n",$$1,$$2}'

build: ## Build bin/prepcast
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/prepcast ./cmd/prepcast

dist: ## Static, reproducible prepcast binaries for Linux, FreeBSD and Windows (amd64, arm64) in dist/, with SHA256SUMS
	@rm -rf dist && mkdir -p dist
	@for p in $(DIST_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
	  out=dist/prepcast-$(VERSION)-$$os-$$arch$$ext; \
	  echo "$$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
	    -ldflags "-s -w -buildid= -X main.version=$(VERSION)" -o $$out ./cmd/prepcast || exit 1; \
	done
	@cd dist && sha256sum prepcast-* > SHA256SUMS && cat SHA256SUMS

demo: build ## Replay the Puebla 2024 election night to local difusores (no setup needed)
	./bin/prepcast demo

test: vet ## All tests with the race detector, real sshd integration tests and short fuzz runs
	PREPCAST_REQUIRE_SSHD=1 PREPCAST_SERVER_MATRIX=full $(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) fuzz

test-short: ## Unit tests only (no sshd, no child processes)
	$(GO) test -short ./...

fuzz: ## Run every fuzz target briefly (FUZZTIME=30000x executions each)
	$(GO) test -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./internal/safepath
	$(GO) test -run='^$$' -fuzz='^FuzzParseManifest$$' -fuzztime=$(FUZZTIME) ./packager
	$(GO) test -run='^$$' -fuzz='^FuzzReadPackage$$' -fuzztime=$(FUZZTIME) ./packager
	$(GO) test -run='^$$' -fuzz='^FuzzParsePackageIndex$$' -fuzztime=$(FUZZTIME) ./packager
	$(GO) test -run='^$$' -fuzz='^FuzzParseAck$$' -fuzztime=$(FUZZTIME) ./publisher
	$(GO) test -run='^$$' -fuzz='^FuzzReadPackage$$' -fuzztime=$(FUZZTIME) ./apply
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRequest$$' -fuzztime=$(FUZZTIME) ./applyproto
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./config
	$(GO) test -run='^$$' -fuzz='^FuzzPlan$$' -fuzztime=$(FUZZTIME) ./internal/rdelta

vet: ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

bench-cut: build ## Cut benchmark: prepcast cut vs sha256sum + tar|zstd on the same tree
	@mkdir -p bench/out
	./bench/cut.sh | tee bench/out/cut.md

bench-push: build ## Push benchmark: prepcast push vs rsync on real sshd targets (full, incremental to 10)
	@mkdir -p bench/out
	$(GO) run ./bench/pushbench -prepcast bin/prepcast | tee bench/out/push.md

bench-scale: build ## Scale benchmark: an incremental cut of a 50k-file tree to 1, 10, 30, 100 targets
	@mkdir -p bench/out
	$(GO) run ./bench/scale -prepcast bin/prepcast | tee bench/out/scale.md

bench-wan: build ## WAN benchmark: 2,000 JSON files through a 50 ms RTT, 12.5 MB/s link, vs rclone
	@mkdir -p bench/out
	$(GO) run ./bench/wan -prepcast bin/prepcast | tee bench/out/wan.md

bench-uplink: ## Uplink bytes over the replayed Puebla night: SFTP file mode vs package mode
	@mkdir -p bench/out
	$(GO) run ./bench/uplink -scale $(UPLINK_SCALE) | tee bench/out/uplink.md

.PHONY: bench-filedelta
bench-filedelta: build ## Changed files as ranges (copy-data) vs whole files vs rsync -a, package deltas vs rsync -az, Puebla database over WAN links
	@mkdir -p bench/out
	$(GO) run ./bench/filedelta -prepcast bin/prepcast | tee bench/out/filedelta.md

.PHONY: bench-night
NIGHT_ROUNDS ?= 2
bench-night: build ## Election night over an emulated WAN: 10 then 30 difusores behind one shared uplink, prepcast vs rsync, rclone, lftp
	@mkdir -p bench/out
	$(GO) run ./bench/night -prepcast bin/prepcast -difusores 10 -rounds $(NIGHT_ROUNDS) | tee bench/out/night.md
	$(GO) run ./bench/night -prepcast bin/prepcast -difusores 30 -rounds 1 -faults with -methods prepcast,prepcast-pkg,rsync,rsync-z | tee bench/out/night-30.md

bench: bench-cut bench-push bench-scale bench-wan bench-uplink ## All benchmarks (tables in bench/out/)

clean: ## Remove build output
	rm -rf bin bench/out dist
