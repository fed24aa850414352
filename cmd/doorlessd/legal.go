package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/frontdoor"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/store"
)

const legalUsage = `usage:
  doorlessd legal process [--data DIR] [--out FILE] REQUEST   verify and answer a signed legal request
  doorlessd legal report [--data DIR] --period YYYY-QN       make, sign and log a transparency report
  doorlessd legal authorities [--data DIR]                   show the legal key and the trusted authorities
  doorlessd legal keygen NAME                                make an authority's key pair (for authorities, tests)
  doorlessd legal sign --key FILE [REQUEST]                  sign a request's text as an authority (for authorities, tests)`

// frontDoor is the front door of a data directory, open.
type frontDoor struct {
	dir  string // DATA/legal
	key  *frontdoor.Key
	log  *requestlog.Log
	desk *frontdoor.Desk
}

// openFrontDoor opens (making them at first use) the legal key, the trust
// file and the request log under data, over st: the server's start.
func openFrontDoor(ctx context.Context, data, origin string, st store.Store) (*frontDoor, bool, error) {
	dir := filepath.Join(data, "legal")
	key, made, err := frontdoor.InitKey(dir, origin)
	if err != nil {
		return nil, false, err
	}
	if err := frontdoor.InitTrust(dir); err != nil {
		return nil, false, err
	}
	fd, err := openDesk(ctx, dir, key, st)
	return fd, made, err
}

// errNoFrontDoor: a legal subcommand on a data directory whose server
// never made its legal key. The subcommand does not make one: the key's
// name is the log's origin, which the server's --legal-origin fixes at
// its first start, and a key made here would fix a random one.
var errNoFrontDoor = errors.New("this data directory has no legal key yet: start doorlessd on it once first " +
	"(it makes the key, named by --legal-origin, and the request log)")

// openExistingFrontDoor opens the front door the server made under data,
// making nothing: the legal subcommands.
func openExistingFrontDoor(ctx context.Context, data string, st store.Store) (*frontDoor, error) {
	dir := filepath.Join(data, "legal")
	key, err := frontdoor.LoadKey(dir)
	if errors.Is(err, frontdoor.ErrNoKey) {
		return nil, errNoFrontDoor
	}
	if err != nil {
		return nil, err
	}
	return openDesk(ctx, dir, key, st)
}

// openDesk opens the request log in dir and the desk over it.
func openDesk(ctx context.Context, dir string, key *frontdoor.Key, st store.Store) (*frontDoor, error) {
	lg, err := requestlog.Open(ctx, filepath.Join(dir, frontdoor.LogDir), key.Signer)
	if err != nil {
		return nil, err
	}
	desk, err := frontdoor.New(frontdoor.Config{Store: st, Log: lg, Signer: key.Signer, Trust: frontdoor.TrustFile(dir)})
	if err != nil {
		lg.Close()
		return nil, err
	}
	return &frontDoor{dir: dir, key: key, log: lg, desk: desk}, nil
}

// legalCommand runs "doorlessd legal ...".
func legalCommand(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, legalUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("doorlessd legal "+verb, flag.ContinueOnError)
	data := fs.String("data", "./doorless-data", "data `directory`")
	storeURL := storeFlag(fs)
	out := fs.String("out", "", "with process: write the disclosure package to `file` (default: standard output)")
	period := fs.String("period", "", "with report: the `period`, YYYY-QN")
	keyFile := fs.String("key", "", "with sign: the authority's signer key `file`")
	// Flags may follow the arguments ("process FILE --out F").
	var pos []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	failf := func(err error) int {
		fmt.Fprintf(os.Stderr, "doorlessd legal %s: %v\n", verb, err)
		return 1
	}
	usage := func() int {
		fmt.Fprintln(os.Stderr, legalUsage)
		return 2
	}
	switch verb {
	case "keygen":
		if len(pos) != 1 {
			return usage()
		}
		skey, vkey, err := legal.GenerateAuthorityKey(rand.Reader, pos[0])
		if err != nil {
			return failf(err)
		}
		fmt.Printf("%s\n%s\n", skey, vkey)
		return 0
	case "sign":
		if *keyFile == "" || len(pos) > 1 {
			return usage()
		}
		file := ""
		if len(pos) == 1 {
			file = pos[0]
		}
		return failIf(failf, signRequest(*keyFile, file))
	case "process", "report", "authorities":
	default:
		return usage()
	}
	if verb == "process" && len(pos) != 1 || verb != "process" && len(pos) != 0 || verb == "report" && *period == "" {
		return usage()
	}
	st, err := openExistingStore(*data, *storeURL)
	if err != nil {
		return failf(err)
	}
	defer st.Close()
	ctx := context.Background()
	fd, err := openExistingFrontDoor(ctx, *data, st)
	if err != nil {
		return failf(err)
	}
	defer fd.log.Close()
	switch verb {
	case "process":
		return processRequest(ctx, fd, pos[0], *out, failf)
	case "report":
		rep, err := fd.desk.Report(ctx, *period)
		if err != nil {
			return failf(err)
		}
		fmt.Fprintf(os.Stderr, "report for %s logged at index %d\n", rep.Period, rep.LogIndex)
		os.Stdout.Write(rep.Signed)
		return 0
	default: // authorities
		trust, err := frontdoor.TrustFile(fd.dir)()
		if err != nil {
			return failf(err)
		}
		fmt.Printf("legal key: %s\n", fd.key.VerifierKey)
		auths := trust.Authorities()
		if len(auths) == 0 {
			fmt.Printf("trusted authorities: none (edit %s)\n", filepath.Join(fd.dir, frontdoor.AuthoritiesFile))
		}
		for _, a := range auths {
			fmt.Printf("authority %s: %s\n  jurisdictions: %s\n", a.Name, a.Key, strings.Join(a.Jurisdictions, " "))
		}
		return 0
	}
}

func failIf(failf func(error) int, err error) int {
	if err != nil {
		return failf(err)
	}
	return 0
}

// processRequest processes the signed request in file: the package goes
// to out (or standard output) when accepted; exit status 3 when refused.
func processRequest(ctx context.Context, fd *frontDoor, file, out string, failf func(error) int) int {
	b, err := readLimited(file, frontdoor.MaxRequest)
	if err != nil {
		return failf(err)
	}
	res, err := fd.desk.Process(ctx, b)
	if err != nil {
		return failf(err)
	}
	if res.Refusal != nil {
		fmt.Fprintf(os.Stderr, "refused: %s (logged at index %d)\n", res.Refusal.Reason, res.LogIndex)
		return 3
	}
	fmt.Fprintf(os.Stderr, "accepted (logged at index %d)\n", res.LogIndex)
	if out == "" {
		os.Stdout.Write(res.Package)
		return 0
	}
	if err := os.WriteFile(out, res.Package, 0o600); err != nil {
		return failf(err)
	}
	return 0
}

// signRequest signs the request text in file (standard input for "" or
// "-") with the signer key in keyFile, to standard output.
func signRequest(keyFile, file string) error {
	k, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(k)))
	if err != nil {
		return errors.New("the key file holds no note signer key")
	}
	text, err := readLimited(file, legal.MaxRequest)
	if err != nil {
		return err
	}
	signed, err := legal.SignText(text, signer)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(signed)
	return err
}

// readLimited reads a file (standard input for "" or "-") of at most max
// bytes.
func readLimited(file string, max int) ([]byte, error) {
	var r io.Reader = os.Stdin
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("over %d bytes", max)
	}
	return b, nil
}
