module github.com/doorless/doorless/bench

go 1.26.8

require (
	github.com/cloudflare/circl v1.6.5
	github.com/doorless/doorless v0.0.0
	go.mau.fi/libsignal v0.2.1
	google.golang.org/protobuf v1.36.12
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/doorless/doorless => ../
