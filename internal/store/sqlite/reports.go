package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/doorless/doorless/internal/store"
)

var _ store.Reports = (*Store)(nil)

const reportColumns = `id, reporter, sender, sealed, commitment_hash, to_many, sent, queued, reported, body,
	attachment_content_type, attachment_file_name, attachment_size, reason`

// AddReport implements store.Reports.
func (s *Store) AddReport(ctx context.Context, r *store.Report) error {
	if r == nil || r.ID == "" || len(r.CommitmentHash) == 0 {
		return errors.New("sqlite: add report: no id or commitment hash")
	}
	var ct, name, size any // NULL without an attachment
	if a := r.Attachment; a != nil {
		ct, name, size = a.ContentType, a.FileName, a.Size
	}
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`INSERT INTO reports (`+reportColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (reporter, commitment_hash) DO NOTHING`,
			r.ID, r.Reporter, r.Sender, b2i(r.Sealed), r.CommitmentHash, b2i(r.ToMany), toMS(r.Sent), toMS(r.Queued), toMS(r.Reported),
			r.Body, ct, name, size, r.Reason)
		if err != nil {
			return fmt.Errorf("sqlite: add report: %v", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: add report: %v", err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: add report: %w", store.ErrDuplicateReport)
		}
		return nil
	})
}

// Reports implements store.Reports.
func (s *Store) Reports(ctx context.Context) ([]store.Report, error) {
	var out []store.Report
	err := s.read(func(db *reader) error {
		rows, err := db.QueryContext(ctx, `SELECT `+reportColumns+` FROM reports ORDER BY reported DESC, id`)
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
	switch {
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: reports: %v", err)
	}
	return out, nil
}

// Report implements store.Reports.
func (s *Store) Report(ctx context.Context, id string) (*store.Report, error) {
	var r *store.Report
	err := s.read(func(db *reader) error {
		var err error
		r, err = scanReport(db.QueryRowContext(ctx, `SELECT `+reportColumns+` FROM reports WHERE id = ?`, id))
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlite: report: %w", store.ErrNotFound)
	case errors.Is(err, store.ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("sqlite: report: %v", err)
	}
	return r, nil
}

// ReportCount implements store.Reports.
func (s *Store) ReportCount(ctx context.Context, commitmentHash []byte) (reports, reporters int, err error) {
	err = s.read(func(db *reader) error {
		return db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT reporter) FROM reports WHERE commitment_hash = ?`,
			commitmentHash).Scan(&reports, &reporters)
	})
	switch {
	case errors.Is(err, store.ErrClosed):
		return 0, 0, err
	case err != nil:
		return 0, 0, fmt.Errorf("sqlite: report count: %v", err)
	}
	return reports, reporters, nil
}

// ExpireReports implements store.Reports.
func (s *Store) ExpireReports(ctx context.Context, cutoff time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM reports WHERE reported < ?`, toMS(cutoff))
		if err != nil {
			return fmt.Errorf("sqlite: expire reports: %v", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: expire reports: %v", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

type scanner interface{ Scan(dest ...any) error }

func scanReport(sc scanner) (*store.Report, error) {
	var (
		r            store.Report
		sealed, many int64
		sent, queued int64
		reported     int64
		ct, name     sql.NullString
		size         sql.NullInt64
	)
	if err := sc.Scan(&r.ID, &r.Reporter, &r.Sender, &sealed, &r.CommitmentHash, &many, &sent, &queued, &reported,
		&r.Body, &ct, &name, &size, &r.Reason); err != nil {
		return nil, err
	}
	r.Sealed, r.ToMany = sealed != 0, many != 0
	r.Sent, r.Queued, r.Reported = fromMS(sent), fromMS(queued), fromMS(reported)
	if size.Valid {
		r.Attachment = &store.ReportAttachment{ContentType: ct.String, FileName: name.String, Size: size.Int64}
	}
	return &r, nil
}
