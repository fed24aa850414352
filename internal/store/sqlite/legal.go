package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Legal = (*Store)(nil)

const legalColumns = `id, received, request, salt, authority, nonce, jurisdiction, type, outcome,
	target_account, nondisclosure_until, log_index, publication_index, published`

// AddLegalRequest implements store.Legal.
func (s *Store) AddLegalRequest(ctx context.Context, r *store.LegalRequest) error {
	if r == nil || len(r.Salt) != 32 || r.Outcome == "" {
		return errors.New("sqlite: add legal request: no request, salt or outcome")
	}
	if r.Nonce != nil && r.Authority == "" {
		return errors.New("sqlite: add legal request: a nonce without an authority")
	}
	var id int64
	err := s.write(ctx, func(tx *wtx) error {
		if r.Nonce != nil {
			var n int
			if err := tx.QueryRow(`SELECT COUNT(*) FROM legal_requests WHERE authority = ? AND nonce = ?`, r.Authority, r.Nonce).Scan(&n); err != nil {
				return fmt.Errorf("sqlite: add legal request: %v", err)
			}
			if n > 0 {
				return fmt.Errorf("sqlite: add legal request: %w", store.ErrNonceSeen)
			}
		}
		var nd any
		if !r.NondisclosureUntil.IsZero() {
			nd = toMS(r.NondisclosureUntil)
		}
		var logIndex any
		if r.Logged {
			if r.LogIndex > math.MaxInt64 {
				return errors.New("sqlite: add legal request: log index out of range")
			}
			logIndex = int64(r.LogIndex)
		}
		err := tx.QueryRow(`INSERT INTO legal_requests (received, request, salt, authority, nonce, jurisdiction, type, outcome,
			target_account, nondisclosure_until, log_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			toMS(orNow(r.Received)), blob(r.Request), r.Salt, nullString(r.Authority), r.Nonce, r.Jurisdiction, r.Type, r.Outcome,
			nullString(r.TargetAccount), nd, logIndex).Scan(&id)
		if err != nil {
			return fmt.Errorf("sqlite: add legal request: %v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.ID = id
	return nil
}

// LegalNonceSeen implements store.Legal.
func (s *Store) LegalNonceSeen(ctx context.Context, authority string, nonce []byte) (bool, error) {
	var n int
	err := s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT COUNT(*) FROM legal_requests WHERE authority = ? AND nonce = ?`, authority, blob(nonce)).Scan(&n)
	})
	if err != nil {
		return false, readErr("legal nonce", err)
	}
	return n > 0, nil
}

// SetLegalRequestLogged implements store.Legal.
func (s *Store) SetLegalRequestLogged(ctx context.Context, id int64, index uint64) error {
	if index > math.MaxInt64 {
		return errors.New("sqlite: log index out of range")
	}
	return s.updateLegal(ctx, "set legal request logged", `UPDATE legal_requests SET log_index = ? WHERE id = ?`, int64(index), id)
}

// SetLegalRequestPublished implements store.Legal.
func (s *Store) SetLegalRequestPublished(ctx context.Context, id int64, index uint64, at time.Time) error {
	if index > math.MaxInt64 {
		return errors.New("sqlite: log index out of range")
	}
	return s.updateLegal(ctx, "set legal request published", `UPDATE legal_requests SET publication_index = ?, published = ? WHERE id = ?`,
		int64(index), toMS(orNow(at)), id)
}

func (s *Store) updateLegal(ctx context.Context, what, query string, args ...any) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(query, args...)
		if err != nil {
			return fmt.Errorf("sqlite: %s: %v", what, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: %s: %v", what, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: %s: %w", what, store.ErrNotFound)
		}
		return nil
	})
}

// UnloggedLegalRequests implements store.Legal.
func (s *Store) UnloggedLegalRequests(ctx context.Context, before time.Time) ([]store.LegalRequest, error) {
	return s.legalRequests(ctx, "unlogged legal requests", `WHERE log_index IS NULL AND received < ? ORDER BY id`, toMS(before))
}

// DueLegalRequests implements store.Legal.
func (s *Store) DueLegalRequests(ctx context.Context, now time.Time) ([]store.LegalRequest, error) {
	return s.legalRequests(ctx, "due legal requests", `WHERE log_index IS NOT NULL AND publication_index IS NULL
		AND nondisclosure_until IS NOT NULL AND nondisclosure_until <= ? ORDER BY id`, toMS(now))
}

// PublishedLegalRequests implements store.Legal.
func (s *Store) PublishedLegalRequests(ctx context.Context, accountID string) ([]store.LegalRequest, error) {
	return s.legalRequests(ctx, "published legal requests", `WHERE target_account = ? AND publication_index IS NOT NULL ORDER BY id`, accountID)
}

func (s *Store) legalRequests(ctx context.Context, what, where string, args ...any) ([]store.LegalRequest, error) {
	var out []store.LegalRequest
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT `+legalColumns+` FROM legal_requests `+where, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.LegalRequest
			var received int64
			var authority, target sql.NullString
			var nd, logIndex, pubIndex, published sql.NullInt64
			if err := rows.Scan(&r.ID, &received, &r.Request, &r.Salt, &authority, &r.Nonce, &r.Jurisdiction, &r.Type, &r.Outcome,
				&target, &nd, &logIndex, &pubIndex, &published); err != nil {
				return err
			}
			r.Received = fromMS(received)
			r.Authority, r.TargetAccount = authority.String, target.String
			if nd.Valid {
				r.NondisclosureUntil = fromMS(nd.Int64)
			}
			if logIndex.Valid {
				r.Logged, r.LogIndex = true, uint64(logIndex.Int64)
			}
			if pubIndex.Valid {
				r.Published, r.PublicationIndex = true, uint64(pubIndex.Int64)
				r.PublishedAt = fromMS(published.Int64)
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, readErr(what, err)
	}
	return out, nil
}

// PutTransparencyReport implements store.Legal.
func (s *Store) PutTransparencyReport(ctx context.Context, r *store.TransparencyReport) error {
	if r == nil || r.Period == "" || len(r.Signed) == 0 || r.LogIndex > math.MaxInt64 {
		return errors.New("sqlite: put transparency report: no period or report")
	}
	return s.write(ctx, func(tx *wtx) error {
		if _, err := tx.Exec(`INSERT INTO transparency_reports (period, generated, log_index, report) VALUES (?, ?, ?, ?)
			ON CONFLICT (period) DO UPDATE SET generated = excluded.generated, log_index = excluded.log_index, report = excluded.report`,
			r.Period, toMS(orNow(r.Generated)), int64(r.LogIndex), r.Signed); err != nil {
			return fmt.Errorf("sqlite: put transparency report: %v", err)
		}
		return nil
	})
}

// TransparencyReport implements store.Legal.
func (s *Store) TransparencyReport(ctx context.Context, period string) (*store.TransparencyReport, error) {
	r := &store.TransparencyReport{}
	var generated, index int64
	err := s.read(func(db *reader) error {
		q := `SELECT period, generated, log_index, report FROM transparency_reports WHERE period = ?`
		args := []any{period}
		if period == "" {
			q, args = `SELECT period, generated, log_index, report FROM transparency_reports ORDER BY period DESC LIMIT 1`, nil
		}
		return db.QueryRowContext(ctx, q, args...).Scan(&r.Period, &generated, &index, &r.Signed)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: transparency report: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("transparency report", err)
	}
	r.Generated, r.LogIndex = fromMS(generated), uint64(index)
	return r, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
