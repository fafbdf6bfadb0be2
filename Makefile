# calgate: the two commands a newcomer needs are `make run` and `make test`
# (the README shows the plain commands behind them).

.PHONY: run test bench

run:
	go run ./cmd/calgate -config gateway.yaml.example

# Installs the real peers (Debian packages) if missing, then runs every
# test with the race detector. Interop tests fail, never skip, when CI=true.
test:
	./scripts/install-test-deps.sh
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above" && exit 1)
	go vet ./...
	go test -race -count=1 -timeout 20m ./...
	go test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 15s ./ical
	go test -run '^$$' -fuzz '^FuzzExpand$$' -fuzztime 15s ./ical

bench:
	go test -run '^$$' -bench . -benchmem ./...
