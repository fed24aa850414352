package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
)

// servePprof serves net/http/pprof's profiles on addr, which must be a
// loopback address: the profiles show the server's internals (never keys
// or messages, but goroutine stacks and allocation sites), so they are for
// an operator on the machine, not for the network.
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("the address must be a loopback IP address and port")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(ln, mux) // for the life of the process
	return nil
}
