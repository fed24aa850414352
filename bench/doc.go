// Package bench holds benchmarks that compare Doorless's Signal protocol
// implementation with go.mau.fi/libsignal and with the bare cryptographic
// primitives the protocol needs. It is a separate module so that
// go.mau.fi/libsignal (GPL) never enters the main module's build list; the
// package itself has no non-test code. See bench_test.go.
package bench
