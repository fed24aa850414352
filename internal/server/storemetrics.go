package server

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/kt"
	"github.com/prometheus/client_golang/prometheus"
)

// measuredStore is a store.Store that times every call of the store it
// wraps, by operation (the method's name), in
// doorless_store_operation_duration_seconds, and counts the calls that
// failed (an error that is not one of the store's answers, such as
// ErrNotFound, nor a cancelled request) in doorless_store_errors_total.
// It wraps every backend alike, so no backend measures itself.
type measuredStore struct {
	st  store.Store
	ops map[string]storeOp
}

var _ store.Store = (*measuredStore)(nil)

type storeOp struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

// storeOps are the operations measured: every method of store.Store but
// Close.
var storeOps = []string{
	"CreateAccount",
	"DeviceList",
	"AccountByUsername",
	"AccountByID",
	"AccountsByID",
	"Device",
	"Devices",
	"DevicesOf",
	"RemoveDevice",
	"CreateInvite",
	"SetUnidentifiedAccess",
	"SetLastSeenDay",
	"DeleteAccount",
	"CreateLinkToken",
	"LinkToken",
	"LinkDevice",
	"CreateMailbox",
	"PutMailbox",
	"TakeMailbox",
	"ExpireProvisioning",
	"StoreKeys",
	"TakeBundle",
	"KeyCounts",
	"Enqueue",
	"SendUsed",
	"SealedSendUsed",
	"Queue",
	"Ack",
	"AckMany",
	"QueueLen",
	"Expire",
	"PendingUpdates",
	"AppendEpoch",
	"EpochCount",
	"AcquireSequencer",
	"LastPendingSeq",
	"Epochs",
	"EpochHeads",
	"TransparencyEntry",
	"TransparencyLeaves",
	"PutCosignature",
	"Cosignatures",
	"AddLegalRequest",
	"LegalNonceSeen",
	"SetLegalRequestLogged",
	"UnloggedLegalRequests",
	"DueLegalRequests",
	"SetLegalRequestPublished",
	"PublishedLegalRequests",
	"PutTransparencyReport",
	"TransparencyReport",
	"AddReport",
	"Reports",
	"Report",
	"ExpireReports",
	"ReportCount",
}

func measureStore(st store.Store, met *metrics) *measuredStore {
	m := &measuredStore{st: st, ops: make(map[string]storeOp, len(storeOps))}
	for _, op := range storeOps {
		m.ops[op] = storeOp{met.storeDuration.WithLabelValues(op), met.storeErrors.WithLabelValues(op)}
	}
	return m
}

// storeAnswers are the errors a store answers with by design: outcomes the
// server turns into a response, not failures.
var storeAnswers = []error{
	store.ErrNotFound, store.ErrUsernameTaken, store.ErrInvalidInvite, store.ErrDuplicate,
	store.ErrQueueFull, store.ErrTooManyDevices, store.ErrNoSignedPreKey, store.ErrNoKyberPreKey,
	store.ErrVersionConflict, store.ErrInvalidLinkToken, store.ErrTooManyLinkTokens,
	store.ErrMailboxFull, store.ErrMailboxEmpty, store.ErrEpochConflict, store.ErrDuplicateReport,
	store.ErrNonceSeen, store.ErrSequencerTaken, context.Canceled,
}

func (m *measuredStore) done(op string, start time.Time, err error) {
	o := m.ops[op]
	o.duration.Observe(time.Since(start).Seconds())
	if err == nil {
		return
	}
	for _, a := range storeAnswers {
		if errors.Is(err, a) {
			return
		}
	}
	o.errors.Inc()
}

// Close implements store.Store; it is not measured.
func (m *measuredStore) Close() error { return m.st.Close() }

func (m *measuredStore) CreateAccount(ctx context.Context, a *store.Account, d *store.Device, k *store.KeyUpload, list *store.DeviceList, inviteHash []byte) error {
	start := time.Now()
	err := m.st.CreateAccount(ctx, a, d, k, list, inviteHash)
	m.done("CreateAccount", start, err)
	return err
}

func (m *measuredStore) DeviceList(ctx context.Context, accountID string) (*store.DeviceList, error) {
	start := time.Now()
	r, err := m.st.DeviceList(ctx, accountID)
	m.done("DeviceList", start, err)
	return r, err
}

func (m *measuredStore) AccountByUsername(ctx context.Context, username string) (*store.Account, error) {
	start := time.Now()
	r, err := m.st.AccountByUsername(ctx, username)
	m.done("AccountByUsername", start, err)
	return r, err
}

func (m *measuredStore) AccountByID(ctx context.Context, id string) (*store.Account, error) {
	start := time.Now()
	r, err := m.st.AccountByID(ctx, id)
	m.done("AccountByID", start, err)
	return r, err
}

func (m *measuredStore) Device(ctx context.Context, accountID string, deviceID uint32) (*store.Device, error) {
	start := time.Now()
	r, err := m.st.Device(ctx, accountID, deviceID)
	m.done("Device", start, err)
	return r, err
}

func (m *measuredStore) AccountsByID(ctx context.Context, ids []string) ([]*store.Account, error) {
	start := time.Now()
	r, err := m.st.AccountsByID(ctx, ids)
	m.done("AccountsByID", start, err)
	return r, err
}

func (m *measuredStore) DevicesOf(ctx context.Context, accountIDs []string) ([][]store.Device, error) {
	start := time.Now()
	r, err := m.st.DevicesOf(ctx, accountIDs)
	m.done("DevicesOf", start, err)
	return r, err
}

func (m *measuredStore) Devices(ctx context.Context, accountID string) ([]store.Device, error) {
	start := time.Now()
	r, err := m.st.Devices(ctx, accountID)
	m.done("Devices", start, err)
	return r, err
}

func (m *measuredStore) RemoveDevice(ctx context.Context, accountID string, deviceID uint32, list *store.DeviceList) error {
	start := time.Now()
	err := m.st.RemoveDevice(ctx, accountID, deviceID, list)
	m.done("RemoveDevice", start, err)
	return err
}

func (m *measuredStore) CreateInvite(ctx context.Context, inv *store.Invite) error {
	start := time.Now()
	err := m.st.CreateInvite(ctx, inv)
	m.done("CreateInvite", start, err)
	return err
}

func (m *measuredStore) SetUnidentifiedAccess(ctx context.Context, accountID string, key []byte, unrestricted bool) error {
	start := time.Now()
	err := m.st.SetUnidentifiedAccess(ctx, accountID, key, unrestricted)
	m.done("SetUnidentifiedAccess", start, err)
	return err
}

func (m *measuredStore) SetLastSeenDay(ctx context.Context, accountID string, deviceID uint32, day int64) error {
	start := time.Now()
	err := m.st.SetLastSeenDay(ctx, accountID, deviceID, day)
	m.done("SetLastSeenDay", start, err)
	return err
}

func (m *measuredStore) DeleteAccount(ctx context.Context, accountID string) error {
	start := time.Now()
	err := m.st.DeleteAccount(ctx, accountID)
	m.done("DeleteAccount", start, err)
	return err
}

func (m *measuredStore) CreateLinkToken(ctx context.Context, t *store.LinkToken, now time.Time, maxDeviceID uint32, maxPending int) error {
	start := time.Now()
	err := m.st.CreateLinkToken(ctx, t, now, maxDeviceID, maxPending)
	m.done("CreateLinkToken", start, err)
	return err
}

func (m *measuredStore) LinkToken(ctx context.Context, tokenHash []byte, now time.Time) (*store.LinkToken, error) {
	start := time.Now()
	r, err := m.st.LinkToken(ctx, tokenHash, now)
	m.done("LinkToken", start, err)
	return r, err
}

func (m *measuredStore) LinkDevice(ctx context.Context, tokenHash []byte, d *store.Device, k *store.KeyUpload, list *store.DeviceList, accessKey []byte) error {
	start := time.Now()
	err := m.st.LinkDevice(ctx, tokenHash, d, k, list, accessKey)
	m.done("LinkDevice", start, err)
	return err
}

func (m *measuredStore) CreateMailbox(ctx context.Context, mb *store.Mailbox) error {
	start := time.Now()
	err := m.st.CreateMailbox(ctx, mb)
	m.done("CreateMailbox", start, err)
	return err
}

func (m *measuredStore) PutMailbox(ctx context.Context, addressHash, message []byte, now time.Time) error {
	start := time.Now()
	err := m.st.PutMailbox(ctx, addressHash, message, now)
	m.done("PutMailbox", start, err)
	return err
}

func (m *measuredStore) TakeMailbox(ctx context.Context, addressHash []byte, now time.Time) ([]byte, error) {
	start := time.Now()
	r, err := m.st.TakeMailbox(ctx, addressHash, now)
	m.done("TakeMailbox", start, err)
	return r, err
}

func (m *measuredStore) ExpireProvisioning(ctx context.Context, now time.Time) (int, error) {
	start := time.Now()
	r, err := m.st.ExpireProvisioning(ctx, now)
	m.done("ExpireProvisioning", start, err)
	return r, err
}

func (m *measuredStore) StoreKeys(ctx context.Context, accountID string, deviceID uint32, k *store.KeyUpload) error {
	start := time.Now()
	err := m.st.StoreKeys(ctx, accountID, deviceID, k)
	m.done("StoreKeys", start, err)
	return err
}

func (m *measuredStore) TakeBundle(ctx context.Context, accountID string, deviceID uint32) (*store.Bundle, error) {
	start := time.Now()
	r, err := m.st.TakeBundle(ctx, accountID, deviceID)
	m.done("TakeBundle", start, err)
	return r, err
}

func (m *measuredStore) KeyCounts(ctx context.Context, accountID string, deviceID uint32) (store.KeyCounts, error) {
	start := time.Now()
	r, err := m.st.KeyCounts(ctx, accountID, deviceID)
	m.done("KeyCounts", start, err)
	return r, err
}

func (m *measuredStore) Enqueue(ctx context.Context, s *store.Send, maxQueue int) error {
	start := time.Now()
	err := m.st.Enqueue(ctx, s, maxQueue)
	m.done("Enqueue", start, err)
	return err
}

func (m *measuredStore) SendUsed(ctx context.Context, sourceAccount string, sourceDevice uint32, sendID string) (bool, error) {
	start := time.Now()
	r, err := m.st.SendUsed(ctx, sourceAccount, sourceDevice, sendID)
	m.done("SendUsed", start, err)
	return r, err
}

func (m *measuredStore) SealedSendUsed(ctx context.Context, recipient, sendID string) (bool, error) {
	start := time.Now()
	r, err := m.st.SealedSendUsed(ctx, recipient, sendID)
	m.done("SealedSendUsed", start, err)
	return r, err
}

func (m *measuredStore) Queue(ctx context.Context, accountID string, deviceID uint32, after int64, limit int) ([]store.Envelope, error) {
	start := time.Now()
	r, err := m.st.Queue(ctx, accountID, deviceID, after, limit)
	m.done("Queue", start, err)
	return r, err
}

func (m *measuredStore) Ack(ctx context.Context, accountID string, deviceID uint32, envelopeID string) error {
	start := time.Now()
	err := m.st.Ack(ctx, accountID, deviceID, envelopeID)
	m.done("Ack", start, err)
	return err
}

func (m *measuredStore) AckMany(ctx context.Context, acks []store.AckRef) (int, error) {
	start := time.Now()
	r, err := m.st.AckMany(ctx, acks)
	m.done("AckMany", start, err)
	return r, err
}

func (m *measuredStore) QueueLen(ctx context.Context, accountID string, deviceID uint32) (int, error) {
	start := time.Now()
	r, err := m.st.QueueLen(ctx, accountID, deviceID)
	m.done("QueueLen", start, err)
	return r, err
}

func (m *measuredStore) Expire(ctx context.Context, cutoff time.Time) (int, error) {
	start := time.Now()
	r, err := m.st.Expire(ctx, cutoff)
	m.done("Expire", start, err)
	return r, err
}

func (m *measuredStore) PendingUpdates(ctx context.Context, limit int) ([]store.PendingUpdate, error) {
	start := time.Now()
	r, err := m.st.PendingUpdates(ctx, limit)
	m.done("PendingUpdates", start, err)
	return r, err
}

func (m *measuredStore) AppendEpoch(ctx context.Context, e *store.Epoch, entries []kt.Entry, published []int64) error {
	start := time.Now()
	err := m.st.AppendEpoch(ctx, e, entries, published)
	m.done("AppendEpoch", start, err)
	return err
}

func (m *measuredStore) EpochCount(ctx context.Context) (uint64, error) {
	start := time.Now()
	r, err := m.st.EpochCount(ctx)
	m.done("EpochCount", start, err)
	return r, err
}

func (m *measuredStore) Epochs(ctx context.Context, from uint64, limit int) ([]store.Epoch, error) {
	start := time.Now()
	r, err := m.st.Epochs(ctx, from, limit)
	m.done("Epochs", start, err)
	return r, err
}

func (m *measuredStore) EpochHeads(ctx context.Context) ([]kt.Epoch, error) {
	start := time.Now()
	r, err := m.st.EpochHeads(ctx)
	m.done("EpochHeads", start, err)
	return r, err
}

func (m *measuredStore) TransparencyEntry(ctx context.Context, index kt.Index) (*kt.Entry, error) {
	start := time.Now()
	r, err := m.st.TransparencyEntry(ctx, index)
	m.done("TransparencyEntry", start, err)
	return r, err
}

func (m *measuredStore) TransparencyLeaves(ctx context.Context) iter.Seq2[kt.Leaf, error] {
	start := time.Now()
	seq := m.st.TransparencyLeaves(ctx)
	return func(yield func(kt.Leaf, error) bool) {
		var failed error
		for l, err := range seq {
			if err != nil {
				failed = err
			}
			if !yield(l, err) {
				break
			}
		}
		m.done("TransparencyLeaves", start, failed)
	}
}

func (m *measuredStore) PutCosignature(ctx context.Context, c *store.Cosignature) error {
	start := time.Now()
	err := m.st.PutCosignature(ctx, c)
	m.done("PutCosignature", start, err)
	return err
}

func (m *measuredStore) Cosignatures(ctx context.Context) ([]store.Cosignature, error) {
	start := time.Now()
	r, err := m.st.Cosignatures(ctx)
	m.done("Cosignatures", start, err)
	return r, err
}

func (m *measuredStore) AcquireSequencer(ctx context.Context) (store.SequencerLease, error) {
	start := time.Now()
	r, err := m.st.AcquireSequencer(ctx)
	m.done("AcquireSequencer", start, err)
	return r, err
}

func (m *measuredStore) LastPendingSeq(ctx context.Context) (int64, error) {
	start := time.Now()
	r, err := m.st.LastPendingSeq(ctx)
	m.done("LastPendingSeq", start, err)
	return r, err
}

func (m *measuredStore) AddLegalRequest(ctx context.Context, r *store.LegalRequest) error {
	start := time.Now()
	err := m.st.AddLegalRequest(ctx, r)
	m.done("AddLegalRequest", start, err)
	return err
}

func (m *measuredStore) LegalNonceSeen(ctx context.Context, authority string, nonce []byte) (bool, error) {
	start := time.Now()
	r, err := m.st.LegalNonceSeen(ctx, authority, nonce)
	m.done("LegalNonceSeen", start, err)
	return r, err
}

func (m *measuredStore) SetLegalRequestLogged(ctx context.Context, id int64, index uint64) error {
	start := time.Now()
	err := m.st.SetLegalRequestLogged(ctx, id, index)
	m.done("SetLegalRequestLogged", start, err)
	return err
}

func (m *measuredStore) UnloggedLegalRequests(ctx context.Context, before time.Time) ([]store.LegalRequest, error) {
	start := time.Now()
	r, err := m.st.UnloggedLegalRequests(ctx, before)
	m.done("UnloggedLegalRequests", start, err)
	return r, err
}

func (m *measuredStore) DueLegalRequests(ctx context.Context, now time.Time) ([]store.LegalRequest, error) {
	start := time.Now()
	r, err := m.st.DueLegalRequests(ctx, now)
	m.done("DueLegalRequests", start, err)
	return r, err
}

func (m *measuredStore) SetLegalRequestPublished(ctx context.Context, id int64, index uint64, at time.Time) error {
	start := time.Now()
	err := m.st.SetLegalRequestPublished(ctx, id, index, at)
	m.done("SetLegalRequestPublished", start, err)
	return err
}

func (m *measuredStore) PublishedLegalRequests(ctx context.Context, accountID string) ([]store.LegalRequest, error) {
	start := time.Now()
	r, err := m.st.PublishedLegalRequests(ctx, accountID)
	m.done("PublishedLegalRequests", start, err)
	return r, err
}

func (m *measuredStore) PutTransparencyReport(ctx context.Context, r *store.TransparencyReport) error {
	start := time.Now()
	err := m.st.PutTransparencyReport(ctx, r)
	m.done("PutTransparencyReport", start, err)
	return err
}

func (m *measuredStore) TransparencyReport(ctx context.Context, period string) (*store.TransparencyReport, error) {
	start := time.Now()
	r, err := m.st.TransparencyReport(ctx, period)
	m.done("TransparencyReport", start, err)
	return r, err
}

func (m *measuredStore) AddReport(ctx context.Context, r *store.Report) error {
	start := time.Now()
	err := m.st.AddReport(ctx, r)
	m.done("AddReport", start, err)
	return err
}

func (m *measuredStore) Reports(ctx context.Context) ([]store.Report, error) {
	start := time.Now()
	r, err := m.st.Reports(ctx)
	m.done("Reports", start, err)
	return r, err
}

func (m *measuredStore) Report(ctx context.Context, id string) (*store.Report, error) {
	start := time.Now()
	r, err := m.st.Report(ctx, id)
	m.done("Report", start, err)
	return r, err
}

func (m *measuredStore) ExpireReports(ctx context.Context, cutoff time.Time) (int, error) {
	start := time.Now()
	r, err := m.st.ExpireReports(ctx, cutoff)
	m.done("ExpireReports", start, err)
	return r, err
}

func (m *measuredStore) ReportCount(ctx context.Context, commitmentHash []byte) (int, int, error) {
	start := time.Now()
	reports, reporters, err := m.st.ReportCount(ctx, commitmentHash)
	m.done("ReportCount", start, err)
	return reports, reporters, err
}
