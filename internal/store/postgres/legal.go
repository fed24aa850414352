package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Legal = (*Store)(nil)

const legalColumns = `id, received, request, salt, authority, nonce, jurisdiction, type, outcome,
	target_account, nondisclosure_until, log_index, publication_index, published`

// AddLegalRequest implements store.Legal. The unique index on (authority,
// nonce) settles two requests racing with one nonce, on any nodes: the
// second waits for the first's transaction and then fails on it.
func (s *Store) AddLegalRequest(ctx context.Context, r *store.LegalRequest) error {
	if r == nil || len(r.Salt) != 32 || r.Outcome == "" {
		return errors.New("postgres: add legal request: no request, salt or outcome")
	}
	if r.Nonce != nil && r.Authority == "" {
		return errors.New("postgres: add legal request: a nonce without an authority")
	}
	var nd, logIndex any
	if !r.NondisclosureUntil.IsZero() {
		nd = toMS(r.NondisclosureUntil)
	}
	if r.Logged {
		if r.LogIndex > math.MaxInt64 {
			return errors.New("postgres: add legal request: log index out of range")
		}
		logIndex = int64(r.LogIndex)
	}
	var id int64
	err := s.single(ctx, func(q querier) error {
		err := q.QueryRow(ctx, `INSERT INTO legal_requests (received, request, salt, authority, nonce, jurisdiction, type, outcome,
			target_account, nondisclosure_until, log_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
			toMS(orNow(r.Received)), blob(r.Request), r.Salt, nullString(r.Authority), nullBytes(r.Nonce), r.Jurisdiction, r.Type, r.Outcome,
			nullString(r.TargetAccount), nd, logIndex).Scan(&id)
		if uniqueViolation(err, "legal_requests_by_nonce") {
			return fmt.Errorf("postgres: add legal request: %w", store.ErrNonceSeen)
		}
		if err != nil {
			return wrap("add legal request", err)
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
	var seen bool
	err := s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM legal_requests WHERE authority = $1 AND nonce = $2)`,
			authority, blob(nonce)).Scan(&seen)
	})
	if err != nil {
		return false, readErr("legal nonce", err)
	}
	return seen, nil
}

// SetLegalRequestLogged implements store.Legal.
func (s *Store) SetLegalRequestLogged(ctx context.Context, id int64, index uint64) error {
	if index > math.MaxInt64 {
		return errors.New("postgres: log index out of range")
	}
	return s.updateLegal(ctx, "set legal request logged", `UPDATE legal_requests SET log_index = $1 WHERE id = $2`, int64(index), id)
}

// SetLegalRequestPublished implements store.Legal.
func (s *Store) SetLegalRequestPublished(ctx context.Context, id int64, index uint64, at time.Time) error {
	if index > math.MaxInt64 {
		return errors.New("postgres: log index out of range")
	}
	return s.updateLegal(ctx, "set legal request published", `UPDATE legal_requests SET publication_index = $1, published = $2 WHERE id = $3`,
		int64(index), toMS(orNow(at)), id)
}

func (s *Store) updateLegal(ctx context.Context, what, query string, args ...any) error {
	return s.single(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, query, args...)
		if err != nil {
			return wrap(what, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: %s: %w", what, store.ErrNotFound)
		}
		return nil
	})
}

// UnloggedLegalRequests implements store.Legal.
func (s *Store) UnloggedLegalRequests(ctx context.Context, before time.Time) ([]store.LegalRequest, error) {
	return s.legalRequests(ctx, "unlogged legal requests", `WHERE log_index IS NULL AND received < $1 ORDER BY id`, toMS(before))
}

// DueLegalRequests implements store.Legal.
func (s *Store) DueLegalRequests(ctx context.Context, now time.Time) ([]store.LegalRequest, error) {
	return s.legalRequests(ctx, "due legal requests", `WHERE log_index IS NOT NULL AND publication_index IS NULL
		AND nondisclosure_until IS NOT NULL AND nondisclosure_until <= $1 ORDER BY id`, toMS(now))
}

// PublishedLegalRequests implements store.Legal.
func (s *Store) PublishedLegalRequests(ctx context.Context, accountID string) ([]store.LegalRequest, error) {
	return s.legalRequests(ctx, "published legal requests", `WHERE target_account = $1 AND publication_index IS NOT NULL ORDER BY id`, accountID)
}

func (s *Store) legalRequests(ctx context.Context, what, where string, args ...any) ([]store.LegalRequest, error) {
	var out []store.LegalRequest
	err := s.read(func(db *pgxpool.Pool) error {
		out = nil
		rows, err := db.Query(ctx, `SELECT `+legalColumns+` FROM legal_requests `+where, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.LegalRequest
			var received int64
			var authority, target *string
			var nd, logIndex, pubIndex, published *int64
			if err := rows.Scan(&r.ID, &received, &r.Request, &r.Salt, &authority, &r.Nonce, &r.Jurisdiction, &r.Type, &r.Outcome,
				&target, &nd, &logIndex, &pubIndex, &published); err != nil {
				return err
			}
			r.Received = fromMS(received)
			if authority != nil {
				r.Authority = *authority
			}
			if target != nil {
				r.TargetAccount = *target
			}
			if nd != nil {
				r.NondisclosureUntil = fromMS(*nd)
			}
			if logIndex != nil {
				r.Logged, r.LogIndex = true, uint64(*logIndex)
			}
			if pubIndex != nil {
				r.Published, r.PublicationIndex = true, uint64(*pubIndex)
				if published != nil {
					r.PublishedAt = fromMS(*published)
				}
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
		return errors.New("postgres: put transparency report: no period or report")
	}
	return s.single(ctx, func(q querier) error {
		if _, err := q.Exec(ctx, `INSERT INTO transparency_reports (period, generated, log_index, report) VALUES ($1, $2, $3, $4)
			ON CONFLICT (period) DO UPDATE SET generated = excluded.generated, log_index = excluded.log_index, report = excluded.report`,
			r.Period, toMS(orNow(r.Generated)), int64(r.LogIndex), r.Signed); err != nil {
			return wrap("put transparency report", err)
		}
		return nil
	})
}

// TransparencyReport implements store.Legal. The newest period is the
// largest name bytewise ("2026-Q4" after "2026-Q3"), whatever the
// database's collation.
func (s *Store) TransparencyReport(ctx context.Context, period string) (*store.TransparencyReport, error) {
	r := &store.TransparencyReport{}
	var generated, index int64
	err := s.read(func(db *pgxpool.Pool) error {
		q := `SELECT period, generated, log_index, report FROM transparency_reports WHERE period = $1`
		args := []any{period}
		if period == "" {
			q, args = `SELECT period, generated, log_index, report FROM transparency_reports ORDER BY period COLLATE "C" DESC LIMIT 1`, nil
		}
		return db.QueryRow(ctx, q, args...).Scan(&r.Period, &generated, &index, &r.Signed)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: transparency report: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("transparency report", err)
	}
	r.Generated, r.LogIndex = fromMS(generated), uint64(index)
	return r, nil
}
