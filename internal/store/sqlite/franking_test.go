package sqlite

import (
	"database/sql"
	"testing"
)

// TestMigrateEnvelopesWithoutFranking: an envelope queued before the
// franking column existed survives the migration and is read back with no
// commitment.
func TestMigrateEnvelopesWithoutFranking(t *testing.T) {
	path, id := oldDatabase(t, 4)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO envelopes (id, account_id, device_id, type, source_account, source_device,
		client_timestamp, server_timestamp, content) VALUES ('e1', ?, 1, 6, '', 0, 1, 2, x'0102')`, id); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	envs, err := s.Queue(t.Context(), id, 1, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 || envs[0].ID != "e1" || envs[0].Franking != nil || string(envs[0].Content) != "\x01\x02" {
		t.Fatalf("queue after migration = %+v, want e1 with no commitment", envs)
	}
}
