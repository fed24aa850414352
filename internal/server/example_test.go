package server_test

import (
	"context"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/internal/store/sqlite"
)

// Example wires a server as doorlessd does: a store, the server, its
// background loop, and a graceful stop.
func Example() {
	dir, err := os.MkdirTemp("", "doorless")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(filepath.Join(dir, "doorless.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close() // after Shutdown: flushes the store

	srv, err := server.New(server.Config{Store: st, Logger: slog.Default()})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx) // expiry and housekeeping

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)

	// … until it is time to stop:
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
	// Output:
}
