# Included by the top-level Makefile. `make bench` (under 10 minutes),
# `make bench QUICK=1` (about a minute), `make bench PROFILE=1` (also CPU and
# heap profiles of portier under load in bench/out/). Writes BENCHMARKS.md,
# keeping the hand-written notes after its "<!-- notes: kept by make bench -->" line.
bench:
	$(or $(GO),go) run ./bench/cmd/benchrun -out BENCHMARKS.md $(if $(QUICK),-quick) $(if $(PROFILE),-profile)
