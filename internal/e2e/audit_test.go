package e2e

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/inventory"

	_ "modernc.org/sqlite" // the driver for reading the server's database
)

// inventoryPath is docs/data-inventory.md, from this package's directory.
var inventoryPath = filepath.Join("..", "..", "docs", "data-inventory.md")

// envelopeSealedSender is the envelope type of a sealed-sender message:
// Signal's Envelope.Type UNIDENTIFIED_SENDER (libsignal's
// CiphertextMessageType has no value for it; the server's envelope does).
const envelopeSealedSender = 6

// dbFile is the server's database in its data directory (cmd/doorlessd).
const dbFile = "doorless.db"

// suspectName matches a table or column name that would hold a contact
// list, a social graph or group membership.
var suspectName = regexp.MustCompile(`(?i)group|member|contact|friend|roster|follow|buddy|address_?book|conversation|chat|thread|peer|circle|block`)

// Tables that hold rows about no account, and may gain rows in a session:
// SQLite's AUTOINCREMENT counter, the hashed send ids that make a send
// idempotent (docs/data-inventory.md: no recipient, no sender to anyone who
// does not know the send id; kept for the message TTL), and the
// key-transparency log, whose rows name no account but by VRF index (an
// entry's value may hold one account's id: "no row links two users"
// still holds for it).
var bookkeepingTables = []string{"sqlite_sequence", "send_ids", "kt_epochs", "kt_entries", "kt_cosignatures"}

// transientTables hold a row only while something is in flight: a queued
// envelope, an unused link token, an account change the transparency log
// has yet to publish. After a session in which everything was delivered
// and every link finished they are empty.
var transientTables = []string{"envelopes", "link_tokens", "provisioning_mailboxes", "kt_pending"}

// snapshot is everything a server had persisted at one moment, and what it
// had logged by then.
type snapshot struct {
	when   string
	files  map[string][]byte // by path relative to the data directory
	tables map[string]*dumpTable
	logs   string // standard output, then standard error
}

// dumpTable is every row of one table.
type dumpTable struct {
	columns []string
	rows    [][]any // int64, float64, string, []byte or nil
}

func (d *dumpTable) col(name string) int { return slices.Index(d.columns, name) }

// takeSnapshot reads every file under the server's data directory, then
// every row of every table of the database as those files hold it: the
// database and its write-ahead log are copied, as read, to a directory of
// their own and opened there, so that the dump is of the very bytes the
// file dump holds and nothing touches the server's files.
func takeSnapshot(t *testing.T, s *server, when string) *snapshot {
	t.Helper()
	snap := &snapshot{when: when, files: readDataDir(t, s.data), tables: map[string]*dumpTable{}}
	snap.logs = s.stdout.String() + s.out.String()
	db, ok := snap.files[dbFile]
	if !ok {
		t.Fatalf("%s: the data directory holds no %s", when, dbFile)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, dbFile), db, 0o600); err != nil {
		t.Fatal(err)
	}
	if wal, ok := snap.files[dbFile+"-wal"]; ok {
		if err := os.WriteFile(filepath.Join(dir, dbFile+"-wal"), wal, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Opened read-write: SQLite needs to build the -shm index of the copied
	// log (it recovers the log, but writes nothing to the database).
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbFile)+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var names []string
	rows, err := conn.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatalf("%s: listing tables: %v", when, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, n := range names {
		snap.tables[n] = dumpRows(t, conn, n)
	}
	return snap
}

func dumpRows(t *testing.T, conn *sql.DB, table string) *dumpTable {
	t.Helper()
	rows, err := conn.Query(`SELECT * FROM "` + strings.ReplaceAll(table, `"`, `""`) + `"`)
	if err != nil {
		t.Fatalf("dumping %s: %v", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	d := &dumpTable{columns: cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = bytes.Clone(b)
			}
		}
		d.rows = append(d.rows, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// valueBytes is a database value as the bytes a search looks in; numbers
// and NULL hold none of what the audit looks for.
func valueBytes(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}

// needle is something that must not be found, and what it is.
type needle struct {
	what string
	b    []byte
}

// secretNeedles are the forms in which a plaintext p could leak: itself, a
// 12-byte slice from its middle (and, for long ones, from either end), and
// the standard base64 and hex encodings of each.
func secretNeedles(what, p string) []needle {
	parts := []struct{ what, s string }{{what, p}}
	if len(p) > 24 {
		m := len(p)/2 - 6
		parts = append(parts, struct{ what, s string }{what + " (12 bytes from the middle)", p[m : m+12]})
	}
	if len(p) > 1024 {
		parts = append(parts,
			struct{ what, s string }{what + " (its first 12 bytes)", p[:12]},
			struct{ what, s string }{what + " (its last 12 bytes)", p[len(p)-12:]})
	}
	var ns []needle
	for _, x := range parts {
		ns = append(ns,
			needle{x.what, []byte(x.s)},
			needle{x.what + " in base64", []byte(base64.StdEncoding.EncodeToString([]byte(x.s)))},
			needle{x.what + " in hex", []byte(hex.EncodeToString([]byte(x.s)))})
	}
	return ns
}

// randomText returns prefix and n random lower-case letters and digits.
func randomText(prefix string, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

// auditUser is what the audit knows of one account.
type auditUser struct {
	*user
	accountID string
	needles   []needle // forms of its account id and username
}

// audit holds what a server must not have, and what it has been caught
// with, by check.
type audit struct {
	t         *testing.T
	inv       *inventory.Inventory
	listen    string // host:port the server listens on
	users     []*auditUser
	secrets   []needle // plaintexts and the group id
	passwords []needle // device passwords and the Basic credentials made of them
	failures  map[string][]string
}

func (a *audit) fail(check, format string, args ...any) {
	a.failures[check] = append(a.failures[check], fmt.Sprintf(format, args...))
}

// report fails the test once per check that found something, with the
// first few findings, and starts afresh.
func (a *audit) report(when string) {
	a.t.Helper()
	for _, check := range slices.Sorted(maps.Keys(a.failures)) {
		fs := a.failures[check]
		more := ""
		if len(fs) > 5 {
			more = fmt.Sprintf("\n\t... and %d more", len(fs)-5)
			fs = fs[:5]
		}
		a.t.Errorf("%s: %s: %d finding(s):\n\t%s%s", when, check, len(a.failures[check]), strings.Join(fs, "\n\t"), more)
	}
	a.failures = map[string][]string{}
}

// found returns how many of the secret needles b holds.
func (a *audit) found(b []byte) int {
	n := 0
	for _, x := range a.secrets {
		if bytes.Contains(b, x.b) {
			n++
		}
	}
	return n
}

// mentions returns the users whose account id or username b holds.
func (a *audit) mentions(b []byte) []string {
	var names []string
	for _, u := range a.users {
		for _, n := range u.needles {
			if bytes.Contains(b, n.b) {
				names = append(names, u.name)
				break
			}
		}
	}
	return names
}

// rowMentions returns the users any value of a row mentions.
func (a *audit) rowMentions(row []any) []string {
	var names []string
	for _, v := range row {
		for _, n := range a.mentions(valueBytes(v)) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

func (a *audit) user(name string) *auditUser {
	for _, u := range a.users {
		if u.name == name {
			return u
		}
	}
	a.t.Fatalf("no user %s", name)
	return nil
}

func describeRow(d *dumpTable, row []any) string {
	var parts []string
	for i, v := range row {
		s := fmt.Sprint(v)
		if b, ok := v.([]byte); ok {
			s = fmt.Sprintf("[%d bytes]", len(b))
		}
		parts = append(parts, d.columns[i]+"="+s)
	}
	return strings.Join(parts, " ")
}

// checkCommon checks what must hold at every moment: no plaintext, group
// id or password anywhere; no row that ties two users together; every
// table, column and file documented; no table or column for contacts or
// groups; no account named in an attachment file.
func (a *audit) checkCommon(snap *snapshot) {
	for _, name := range slices.Sorted(maps.Keys(snap.tables)) {
		d := snap.tables[name]
		if _, ok := a.inv.Tables[name]; !ok {
			a.fail("every table is in the inventory", "table %s", name)
		}
		if suspectName.MatchString(name) {
			a.fail("no table or column for contacts or groups", "table %s", name)
		}
		for _, c := range d.columns {
			if !a.inv.HasColumn(name, c) {
				a.fail("every column is in the inventory", "column %s.%s", name, c)
			}
			if suspectName.MatchString(c) {
				a.fail("no table or column for contacts or groups", "column %s.%s", name, c)
			}
		}
		for _, row := range d.rows {
			if m := a.rowMentions(row); len(m) > 1 {
				a.fail("no row links two users", "%s row {%s} names %s", name, describeRow(d, row), strings.Join(m, " and "))
			}
			for i, v := range row {
				for _, n := range append(slices.Clip(a.secrets), a.passwords...) {
					if bytes.Contains(valueBytes(v), n.b) {
						a.fail("no plaintext, group id or password in the database", "%s.%s holds %s", name, d.columns[i], n.what)
					}
				}
			}
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(snap.files)) {
		b := snap.files[rel]
		if _, ok := a.inv.FileKind(rel); !ok {
			a.fail("every file is of a kind in the inventory", "%s", rel)
		}
		for _, n := range append(slices.Clip(a.secrets), a.passwords...) {
			if bytes.Contains(b, n.b) {
				a.fail("no plaintext, group id or password in any file", "%s holds %s", rel, n.what)
			}
		}
		if strings.HasPrefix(rel, "attachments/") {
			if m := a.mentions(b); len(m) > 0 {
				a.fail("no attachment file names an account", "%s names %s", rel, strings.Join(m, ", "))
			}
		}
	}
}

// ipCandidate matches what could be an IPv4 or IPv6 address, with a port
// or in brackets; netip decides.
var ipCandidate = regexp.MustCompile(`(?:\d{1,3}(?:\.\d{1,3}){3}|\[?[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\]?)(?::\d+)?`)

// checkLogs checks everything the server wrote: the only IP address is its
// own listening address (clients all come from 127.0.0.1, so any other
// appearance of it, with another port or none, would be a client's); no
// password, plaintext, group id, account id or username.
func (a *audit) checkLogs(logs string) {
	for i, line := range strings.Split(logs, "\n") {
		for _, c := range ipCandidate.FindAllString(line, -1) {
			if c == a.listen {
				continue
			}
			host := c
			if ap, err := netip.ParseAddrPort(c); err == nil {
				host = ap.Addr().String()
			}
			host = strings.Trim(host, "[]")
			if _, err := netip.ParseAddr(host); err == nil {
				a.fail("no IP address in the logs but the listening address", "line %d: %q", i+1, line)
			}
		}
		for _, n := range append(slices.Clip(a.secrets), a.passwords...) {
			if strings.Contains(line, string(n.b)) {
				a.fail("no plaintext, group id or password in the logs", "line %d holds %s", i+1, n.what)
			}
		}
		if m := a.mentions([]byte(line)); len(m) > 0 {
			a.fail("no account id or username in the logs", "line %d names %s: %q", i+1, strings.Join(m, ", "), line)
		}
	}
}

// readCredentials returns the account id and the password a profile keeps
// (in the clear: the test profiles have no passphrase).
func readCredentials(t *testing.T, profile string) (accountID string, deviceID uint32, password string) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(profile, "profile.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pw []byte
	if err := conn.QueryRow(`SELECT account_id, device_id, password FROM account`).Scan(&accountID, &deviceID, &pw); err != nil {
		t.Fatalf("reading %s's credentials: %v", profile, err)
	}
	if accountID == "" || len(pw) == 0 {
		t.Fatalf("%s holds no credentials", profile)
	}
	return accountID, deviceID, string(pw)
}

// drain runs receive for every user, round after round, until a round in
// which none of them received anything (messages answered with receipts,
// receipts, group updates: whatever one delivery causes is delivered too).
// It returns what each profile received.
func drain(t *testing.T, users ...*user) map[string][]received {
	t.Helper()
	got := map[string][]received{}
	for range 6 {
		quiet := true
		for _, u := range users {
			msgs := u.receive()
			if len(msgs) > 0 {
				quiet = false
			}
			got[u.profile] = append(got[u.profile], msgs...)
		}
		if quiet {
			return got
		}
	}
	t.Fatal("the queues did not drain in 6 rounds of receive")
	return nil
}

// hasText reports whether msgs hold a message with text from from.
func hasText(msgs []received, from, text string) bool {
	for _, m := range msgs {
		if m.Event == "message" && m.From == from && m.Text == text {
			return true
		}
	}
	return false
}

var groupCreatedRE = regexp.MustCompile(`^created #\S+ \(([0-9a-f]{64})\) with 3 members\n$`)

// TestServerKnowsAlmostNothing runs a session of three users through the
// real binaries (alice with a second device; one-to-one messages both ways,
// a group, files, a view-once file, a timer) and dumps everything the
// server persisted, while messages are queued (A) and after everything was
// delivered and the server stopped (B): every row of every table, every
// file of its data directory, everything it printed. It checks that the
// dump holds no plaintext, no link between two users (a queued message to
// a contact whose access key the sender holds is sealed: no sender), no
// contact list or group, nothing that docs/data-inventory.md does not list,
// and logs without addresses, passwords or names; and that after the
// session the server holds the tables it started with and rows per
// account, device and key.
func TestServerKnowsAlmostNothing(t *testing.T) {
	t.Parallel()
	inv, err := inventory.ParseFile(inventoryPath)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir())
	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	a := &audit{t: t, inv: inv, listen: u.Host, failures: map[string][]string{}}
	fresh := takeSnapshot(t, s, "before the session")

	// Usernames and every plaintext are random, so that no chance match in
	// ciphertext or keys can pass for them.
	alice := newUser(t, randomText("alice_", 10))
	bob := newUser(t, randomText("bob_", 10))
	carol := newUser(t, randomText("carol_", 10))
	for _, u := range []*user{alice, bob, carol} {
		u.register(s)
	}
	alice2 := newUser(t, alice.name)
	alice2.profile = filepath.Join(t.TempDir(), "alice2")
	alice2.link(s, alice)
	everyone := []*user{alice, alice2, bob, carol}

	secret := func(what string, n int) string {
		p := randomText(what+"-", n)
		a.secrets = append(a.secrets, secretNeedles(what+" "+p, p)...)
		return p
	}

	// Round 1: first contact, every pair both ways. These are sent
	// authenticated; after them every user holds the others' access keys.
	type line struct {
		from, to *user
		text     string
	}
	var round1 []line
	for _, p := range [][2]*user{{alice, bob}, {alice, carol}, {bob, alice}, {bob, carol}, {carol, alice}, {carol, bob}} {
		l := line{p[0], p[1], secret("text", 32)}
		p[0].must("", "send", p[1].name, l.text)
		round1 = append(round1, l)
	}
	got := drain(t, everyone...)
	for _, l := range round1 {
		if !hasText(got[l.to.profile], l.from.name, l.text) {
			t.Fatalf("%s did not receive %q from %s: %+v", l.to.name, l.text, l.from.name, got[l.to.profile])
		}
	}

	// Round 2: more of the same, now between known contacts; a file, a
	// timer, a group.
	dir := t.TempDir()
	fileName := secret("dossier", 20) + ".txt"
	var content strings.Builder
	for range 64 {
		content.WriteString(randomText("", 60) + "\n")
	}
	a.secrets = append(a.secrets, secretNeedles("the file's content", content.String())...)
	if err := os.WriteFile(filepath.Join(dir, fileName), []byte(content.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	fileText := secret("caption", 32)
	alice.must("", "send", bob.name, "--file", filepath.Join(dir, fileName), fileText)
	alice.must("", "timer", bob.name, "1h")
	fleeting := secret("fleeting", 32)
	alice.must("", "send", bob.name, fleeting)
	reply := secret("text", 32)
	bob.must("", "send", alice.name, reply)
	carolToBob := secret("text", 32)
	carol.must("", "send", bob.name, carolToBob)

	title := secret("club", 24)
	created := alice.must("", "group", "create", title, bob.name, carol.name)
	m := groupCreatedRE.FindStringSubmatch(created)
	if m == nil {
		t.Fatalf("group create printed %q", created)
	}
	groupID, _ := hex.DecodeString(m[1])
	a.secrets = append(a.secrets,
		needle{"the group id", []byte(m[1])},
		needle{"the group id (raw)", groupID},
		needle{"the group id in base64", []byte(base64.StdEncoding.EncodeToString(groupID))},
		needle{"the group id in base64url", []byte(base64.RawURLEncoding.EncodeToString(groupID))})
	got = drain(t, everyone...) // round 2 and the group's creation
	groupLines := map[*user]string{}
	for _, u := range []*user{alice, bob, carol} {
		groupLines[u] = secret("group", 32)
		u.must("", "group", "send", title, groupLines[u])
	}
	inGroup := drain(t, everyone...)
	var file *received
	for i, msg := range got[bob.profile] {
		if msg.Attachment != nil && msg.From == alice.name {
			file = &got[bob.profile][i]
		}
	}
	if file == nil || file.Text != fileText || filepath.Base(file.Attachment.Path) != fileName {
		t.Fatalf("bob's file: %+v", file)
	}
	if b, err := os.ReadFile(file.Attachment.Path); err != nil || string(b) != content.String() {
		t.Fatalf("bob's copy of the file differs: %v", err)
	}
	if !hasText(got[bob.profile], alice.name, fleeting) || !hasText(got[alice.profile], bob.name, reply) || !hasText(got[bob.profile], carol.name, carolToBob) {
		t.Fatalf("round 2 went astray: bob got %+v, alice got %+v", got[bob.profile], got[alice.profile])
	}
	for _, u := range []*user{alice, bob, carol} {
		for _, v := range []*user{alice, alice2, bob, carol} {
			if u.name != v.name && !hasText(inGroup[v.profile], u.name, groupLines[u]) {
				t.Fatalf("%s did not receive %s's group message: %+v", v.profile, u.name, inGroup[v.profile])
			}
		}
	}

	// The final round, while carol is offline: one-to-one and group
	// messages from alice and bob, a view-once file from bob. Each sender
	// holds carol's access key by now, so every one of these is sealed.
	// Bob receives alice's group message before he sends his: what that
	// makes him send back (a delivery receipt, when receipts are on) is
	// queued for alice at (A) too.
	final := map[*user][]string{alice: {secret("late", 32), secret("lategroup", 32)}, bob: {secret("late", 32), secret("lategroup", 32)}}
	alice.must("", "send", carol.name, final[alice][0])
	alice.must("", "group", "send", title, final[alice][1])
	if msgs := bob.receive(); !hasText(msgs, alice.name, final[alice][1]) {
		t.Fatalf("bob did not receive alice's last group message: %+v", msgs)
	}
	bob.must("", "send", carol.name, final[bob][0])
	bob.must("", "group", "send", title, final[bob][1])
	viewOnceName := secret("eyesonly", 20) + ".txt"
	viewOnceContent := secret("viewonce", 2000)
	if err := os.WriteFile(filepath.Join(dir, viewOnceName), []byte(viewOnceContent), 0o600); err != nil {
		t.Fatal(err)
	}
	viewOnceText := secret("caption", 32)
	final[bob] = append(final[bob], viewOnceText)
	bob.must("", "send", carol.name, "--file", filepath.Join(dir, viewOnceName), "--view-once", viewOnceText)

	// What the audit looks for besides plaintext: the users' account ids
	// and names, their passwords.
	for _, u := range []*user{alice, bob, carol} {
		id, _, _ := readCredentials(t, u.profile)
		au := &auditUser{user: u, accountID: id}
		au.needles = []needle{{"account id", []byte(id)}, {"username", []byte(u.name)}}
		if raw, err := hex.DecodeString(strings.ReplaceAll(id, "-", "")); err == nil && len(raw) == 16 {
			au.needles = append(au.needles, needle{"account id (raw)", raw}, needle{"account id (hex)", []byte(hex.EncodeToString(raw))})
		}
		a.users = append(a.users, au)
	}
	for _, u := range everyone {
		id, dev, pw := readCredentials(t, u.profile)
		basic := base64.StdEncoding.EncodeToString([]byte(api.Login(id, dev) + ":" + pw))
		a.passwords = append(a.passwords, needle{u.profile + "'s password", []byte(pw)}, needle{u.profile + "'s Basic credentials", []byte(basic)})
	}

	// (A): messages queued for carol, and for alice's devices (bob's group
	// message, alice's own sends, whatever bob sent back).
	queued := takeSnapshot(t, s, "A (queued)")
	// Checks of the checks: the dump holds what the searches must search.
	blobs := 0
	for rel := range queued.files {
		if strings.HasPrefix(rel, "attachments/") && strings.HasSuffix(rel, ".blob") {
			blobs++
		}
	}
	if blobs != 2 {
		t.Errorf("%s: %d attachment blobs in the data directory, want 2", queued.when, blobs)
	}
	if n := a.found([]byte(content.String())); n == 0 {
		t.Error("the search does not find the file's content in the file itself")
	}
	a.checkCommon(queued)
	a.checkQueued(queued, a.user(carol.name), 5)
	a.report(queued.when)

	// Everyone receives everything.
	got = drain(t, carol, alice, alice2, bob)
	for _, u := range []*user{alice, bob} {
		for _, text := range final[u] {
			if !hasText(got[carol.profile], u.name, text) {
				t.Fatalf("carol did not receive %q from %s: %+v", text, u.name, got[carol.profile])
			}
		}
	}
	var viewOnceID string
	for _, msg := range got[carol.profile] {
		if msg.Text == viewOnceText && msg.Attachment != nil && msg.Attachment.ViewOnce {
			viewOnceID = msg.ID
		}
	}
	if viewOnceID == "" {
		t.Fatalf("carol got no view-once file: %+v", got[carol.profile])
	}
	if out := carol.must("", "view", viewOnceID); out != viewOnceContent {
		t.Fatalf("view printed %d bytes, want the %d sent", len(out), len(viewOnceContent))
	}

	// (B): the server stopped cleanly after everything was delivered.
	s.stop(syscall.SIGTERM)
	after := takeSnapshot(t, s, "B (delivered, stopped)")
	a.checkCommon(after)
	a.checkAfter(fresh, after, queued)
	if !strings.Contains(after.logs, "listening on "+s.url) || strings.Count(after.logs, "route=") < 50 {
		t.Errorf("the server's output lacks the listening line or the request lines:\n%s", after.logs)
	}
	a.checkLogs(after.logs)
	a.report(after.when)

	// The fresh server held no plaintext either (a check of the checks: it
	// had nothing yet), and its tables were documented.
	a.checkCommon(fresh)
	a.report(fresh.when)
}

// checkQueued checks the queue at (A): something is queued, and every
// envelope queued for to (at least want of them, all sent by other users
// who held its access key) is sealed: type 6, no source account, source
// device 0.
func (a *audit) checkQueued(snap *snapshot, to *auditUser, want int) {
	env := snap.tables["envelopes"]
	if env == nil || len(env.rows) == 0 {
		a.t.Fatalf("%s: no envelopes queued", snap.when)
	}
	acct, typ, src, srcDev := env.col("account_id"), env.col("type"), env.col("source_account"), env.col("source_device")
	if acct < 0 || typ < 0 || src < 0 || srcDev < 0 {
		a.t.Fatalf("%s: envelopes has columns %v", snap.when, env.columns)
	}
	n := 0
	for _, row := range env.rows {
		if row[acct] != to.accountID {
			continue
		}
		n++
		if row[typ] != int64(envelopeSealedSender) || row[src] != "" || row[srcDev] != int64(0) {
			sender := a.rowMentions([]any{row[src]})
			a.fail("a message to a contact whose access key the sender holds is sealed", "envelope to %s: type %v, source_account %q (%v), source_device %v",
				to.name, row[typ], row[src], sender, row[srcDev])
		}
	}
	if n < want {
		a.fail("the final round is queued for carol", "%d envelopes queued for %s, want at least %d", n, to.name, want)
	}
}

// checkAfter checks the state after the session against the state before
// it: the same tables; the in-flight ones empty; every new row about one of
// the session's accounts (an account, a device, a key, a device list), or
// bookkeeping that names none; one row per account and per device; and no
// byte of a ciphertext queued at (A) left in any file.
func (a *audit) checkAfter(fresh, after, queued *snapshot) {
	if !slices.Equal(slices.Sorted(maps.Keys(fresh.tables)), slices.Sorted(maps.Keys(after.tables))) {
		a.fail("the same tables before and after the session", "before %v, after %v",
			slices.Sorted(maps.Keys(fresh.tables)), slices.Sorted(maps.Keys(after.tables)))
	}
	for _, name := range slices.Sorted(maps.Keys(after.tables)) {
		d := after.tables[name]
		perAccount := name == "accounts" || d.col("account_id") >= 0
		switch {
		case slices.Contains(transientTables, name):
			for _, row := range d.rows {
				a.fail("nothing in flight is kept", "%s row {%s}", name, describeRow(d, row))
			}
		case perAccount:
			for _, row := range d.rows {
				if m := a.rowMentions(row); len(m) != 1 {
					a.fail("every new row belongs to one account", "%s row {%s} names %v", name, describeRow(d, row), m)
				}
			}
		case slices.Contains(bookkeepingTables, name):
		default:
			before := fresh.tables[name]
			if before == nil || fmt.Sprint(before.rows) != fmt.Sprint(d.rows) {
				a.fail("every new row belongs to one account", "table %s, which names no account, changed", name)
			}
		}
	}
	for name, want := range map[string]int{"accounts": 3, "devices": 4} {
		if d := after.tables[name]; d == nil || len(d.rows) != want {
			a.fail("one row per account and per device", "table %s", name)
		}
	}
	// Envelopes are deleted when acknowledged, and deleted means gone from
	// the files: secure_delete zeroes the database's pages, and a clean stop
	// checkpoints and removes the write-ahead log.
	// (A)'s files hold each of its envelopes: what the search looks for is
	// there to find while it is queued.
	env := queued.tables["envelopes"]
	content := env.col("content")
	for _, row := range env.rows {
		c, _ := row[content].([]byte)
		if len(c) < 64 {
			a.t.Fatalf("%s: an envelope of %d bytes", queued.when, len(c))
		}
		slice := c[len(c)/2-16 : len(c)/2+16]
		if !slices.ContainsFunc(slices.Collect(maps.Values(queued.files)), func(b []byte) bool { return bytes.Contains(b, slice) }) {
			a.t.Errorf("%s: no file holds an envelope the database holds", queued.when)
		}
		for _, rel := range slices.Sorted(maps.Keys(after.files)) {
			if bytes.Contains(after.files[rel], slice) {
				a.fail("an acknowledged envelope leaves no trace", "%s holds ciphertext queued at (A)", rel)
			}
		}
	}
}

// TestAuditLogCheck: the log check catches an address in every form a
// client's could take, and leaves the listening address and times alone.
func TestAuditLogCheck(t *testing.T) {
	a := &audit{t: t, listen: "127.0.0.1:8080", failures: map[string][]string{}}
	for _, line := range []string{
		"doorlessd listening on http://127.0.0.1:8080",
		`time=2026-01-02T10:11:12.345Z level=INFO msg="doorlessd started" addr=127.0.0.1:8080`,
		"time=2026-01-02T10:11:12.345+01:00 level=INFO msg=request method=GET route=/v1/keys/{username}/{device} status=200 duration=1.234ms",
		"version 1.2.3 took 0.5s",
	} {
		a.checkLogs(line)
		if len(a.failures) != 0 {
			t.Errorf("%q: %v", line, a.failures)
		}
		a.failures = map[string][]string{}
	}
	for _, line := range []string{
		"ip=127.0.0.1",
		"from 127.0.0.1:54321",
		"remote=[::1]:443",
		"client 2001:db8::17 said",
		"forwarded=10.1.2.3,",
		"peer ::ffff:192.0.2.1",
	} {
		a.checkLogs(line)
		if len(a.failures) != 1 {
			t.Errorf("%q: the check found %v", line, a.failures)
		}
		a.failures = map[string][]string{}
	}
}
