package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/protocol/keys"
)

// The test binary runs doorlessd's main when asked to, so that the tests
// run the real command without building it.
func TestMain(m *testing.M) {
	if os.Getenv("DOORLESSD_TEST_MAIN") == "1" {
		os.Args = append([]string{"doorlessd"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

func command(t *testing.T, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "DOORLESSD_TEST_MAIN=1")
	return cmd
}

// start runs doorlessd and returns its URL, as it printed it.
func start(t *testing.T, args ...string) (*exec.Cmd, string, *bytes.Buffer) {
	cmd := command(t, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v; stderr:\n%s", err, stderr.String())
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "doorlessd listening on ")
	if !ok || !(strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasPrefix(url, "https://127.0.0.1:")) || strings.HasSuffix(url, ":0") {
		t.Fatalf("listening line %q", line)
	}
	go io.Copy(io.Discard, stdout)
	return cmd, url, &stderr
}

func register(t *testing.T, url, name, invite string) int {
	id, err := keys.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spk, err := keys.GenerateSignedPreKey(id, 1, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kpk, err := keys.GenerateKyberPreKey(id, 1, keys.KEMKyber1024, true, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req := api.RegisterRequest{
		Username:       name,
		InviteCode:     invite,
		IdentityKey:    id.PublicKey().Bytes(),
		RegistrationID: 7,
		Keys: api.KeyUpload{
			SignedPreKey:          &api.SignedPreKey{ID: 1, PublicKey: spk.KeyPair.Public.Bytes(), Signature: spk.Signature},
			LastResortKyberPreKey: &api.KyberPreKey{ID: 1, PublicKey: kpk.KeyPair.Public.Bytes(), Signature: kpk.Signature},
		},
	}
	if req.DeviceList, err = devicelist.Sign(id, &devicelist.List{Version: 1, Devices: []uint32{1}}, rand.Reader); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	resp, err := http.Post(url+api.PathAccounts, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeInviteAndDrain(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out, err := command(t, "invite", "--data", data, "--count", "2", "--expires", "1h").Output()
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	codes := strings.Fields(string(out))
	if len(codes) != 2 || len(codes[0]) != 32 || codes[0] == codes[1] {
		t.Fatalf("invite printed %q", out)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v, %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(data, "doorless.db")); err != nil {
		t.Fatal(err)
	}

	cmd, url, stderr := start(t, "--data", data, "--registration", "invite", "--log-format", "json")
	resp, err := http.Get(url + api.PathHealth)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if code := register(t, url, "alice", "wrong"); code != http.StatusForbidden {
		t.Fatalf("registration with a wrong invite: %d", code)
	}
	if code := register(t, url, "alice", codes[0]); code != http.StatusOK {
		t.Fatalf("registration with an invite: %d", code)
	}
	if code := register(t, url, "bob", codes[0]); code != http.StatusForbidden {
		t.Fatalf("registration with a used invite: %d", code)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"doorlessd stopped"`) {
		t.Errorf("no JSON log of the stop:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), codes[0]) {
		t.Error("the invite code reached the log")
	}

	// The account survived the restart: the store was flushed.
	_, url, _ = start(t, "--data", data, "--registration", "open")
	if code := register(t, url, "alice", ""); code != http.StatusConflict {
		t.Fatalf("alice after restart: %d, want 409", code)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--registration", "maybe"},
		{"--log-format", "xml"},
		{"--tls-cert", "x.pem"},
		{"--max-envelope", "999999999"},
		{"--unidentified-burst", "0"},
		{"--unidentified-rate", "fast"},
		{"--ip-burst", "0"},
		{"--account-burst", "0"},
		{"--account-rate", "fast"},
		{"--pprof", "0.0.0.0:0"},
		{"--pprof", "localhost"},
		{"extra"},
		{"invite", "--count", "0"},
	} {
		cmd := command(t, append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0"}, args...)...)
		if args[0] == "invite" {
			cmd = command(t, append(args, "--data", t.TempDir())...)
		}
		if err := cmd.Run(); err == nil {
			t.Errorf("%q: exit 0", args)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	_, url, _ := start(t, "--data", filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("TLS server announced %s", url)
	}
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(url + api.PathHealth)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz over TLS: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestLogIPs: request lines carry the client's address only with --log-ips.
func TestLogIPs(t *testing.T) {
	for _, on := range []bool{false, true} {
		args := []string{"--data", t.TempDir(), "--log-format", "json", "--unidentified-rate", "2", "--unidentified-burst", "5"}
		if on {
			args = append(args, "--log-ips")
		}
		cmd, url, stderr := start(t, args...)
		resp, err := http.Get(url + api.PathDevices)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit: %v", err)
		}
		var requests int
		for _, line := range strings.Split(stderr.String(), "\n") {
			if !strings.Contains(line, `"msg":"request"`) {
				continue
			}
			requests++
			if has := strings.Contains(line, `"ip":"127.0.0.1"`); has != on {
				t.Errorf("--log-ips %v: request line %s", on, line)
			}
		}
		if requests != 1 {
			t.Errorf("--log-ips %v: %d request lines in\n%s", on, requests, stderr.String())
		}
	}
}

// TestPprof: --pprof serves the profiles on a loopback address, and the
// API's listener does not.
func TestPprof(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, url, _ := start(t, "--data", t.TempDir(), "--pprof", addr, "--ip-rate", "-1", "--account-rate", "-1")
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof: %d %.100s", resp.StatusCode, body)
	}
	resp, err = http.Get(url + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("pprof on the API listener: %d", resp.StatusCode)
	}
}
