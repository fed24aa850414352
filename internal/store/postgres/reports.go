package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Reports = (*Store)(nil)

const reportColumns = `id, reporter, sender, sealed, commitment_hash, to_many, sent, queued, reported, body,
	attachment_content_type, attachment_file_name, attachment_size, reason`

// AddReport implements store.Reports. The unique constraint on (reporter,
// commitment_hash) refuses a second report of one message by one account,
// from any node.
func (s *Store) AddReport(ctx context.Context, r *store.Report) error {
	if r == nil || r.ID == "" || len(r.CommitmentHash) == 0 {
		return errors.New("postgres: add report: no id or commitment hash")
	}
	var ct, name, size any // NULL without an attachment
	if a := r.Attachment; a != nil {
		ct, name, size = a.ContentType, a.FileName, a.Size
	}
	return s.single(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `INSERT INTO reports (`+reportColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT ON CONSTRAINT reports_reporter_commitment_hash_key DO NOTHING`,
			r.ID, r.Reporter, r.Sender, r.Sealed, r.CommitmentHash, r.ToMany, toMS(r.Sent), toMS(r.Queued), toMS(r.Reported),
			r.Body, ct, name, size, r.Reason)
		if err != nil {
			return wrap("add report", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: add report: %w", store.ErrDuplicateReport)
		}
		return nil
	})
}

// Reports implements store.Reports.
func (s *Store) Reports(ctx context.Context) ([]store.Report, error) {
	var out []store.Report
	err := s.read(func(db *pgxpool.Pool) error {
		out = nil
		rows, err := db.Query(ctx, `SELECT `+reportColumns+` FROM reports ORDER BY reported DESC, id COLLATE "C"`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanReport(rows)
			if err != nil {
				return err
			}
			out = append(out, *r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, readErr("reports", err)
	}
	return out, nil
}

// ReportCount implements store.Reports.
func (s *Store) ReportCount(ctx context.Context, commitmentHash []byte) (reports, reporters int, err error) {
	err = s.read(func(db *pgxpool.Pool) error {
		return db.QueryRow(ctx, `SELECT COUNT(*), COUNT(DISTINCT reporter) FROM reports WHERE commitment_hash = $1`,
			commitmentHash).Scan(&reports, &reporters)
	})
	if err != nil {
		return 0, 0, readErr("report count", err)
	}
	return reports, reporters, nil
}

// Report implements store.Reports.
func (s *Store) Report(ctx context.Context, id string) (*store.Report, error) {
	var r *store.Report
	err := s.read(func(db *pgxpool.Pool) error {
		var err error
		r, err = scanReport(db.QueryRow(ctx, `SELECT `+reportColumns+` FROM reports WHERE id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: report: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, readErr("report", err)
	}
	return r, nil
}

// ExpireReports implements store.Reports.
func (s *Store) ExpireReports(ctx context.Context, cutoff time.Time) (int, error) {
	var n int64
	err := s.single(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `DELETE FROM reports WHERE reported < $1`, toMS(cutoff))
		if err != nil {
			return wrap("expire reports", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

func scanReport(row pgx.Row) (*store.Report, error) {
	var (
		r                      store.Report
		sent, queued, reported int64
		ct, name               *string
		size                   *int64
	)
	if err := row.Scan(&r.ID, &r.Reporter, &r.Sender, &r.Sealed, &r.CommitmentHash, &r.ToMany, &sent, &queued, &reported,
		&r.Body, &ct, &name, &size, &r.Reason); err != nil {
		return nil, err
	}
	r.Sent, r.Queued, r.Reported = fromMS(sent), fromMS(queued), fromMS(reported)
	if size != nil {
		r.Attachment = &store.ReportAttachment{Size: *size}
		if ct != nil {
			r.Attachment.ContentType = *ct
		}
		if name != nil {
			r.Attachment.FileName = *name
		}
	}
	return &r, nil
}
