package libsignal

// Typed wrappers over the harness's sender-key commands (group messages). A distribution
// id is a UUID in its hyphenated string form, as libsignal's JS API takes it.

// TypeSenderKey is the CiphertextMessageType of a SenderKeyMessage.
const TypeSenderKey = 7

// Kinds of sender-key failures, beyond those in errors.go.
const (
	// KindNoSenderKeyState: no record for the sender and distribution, or no chain in it
	// with the message's chain id.
	KindNoSenderKeyState Kind = "NoSenderKeyState"
	// KindInvalidSenderKeySession: a sender-key record that cannot be used as asked.
	KindInvalidSenderKeySession Kind = "InvalidSenderKeySession"
)

// SenderKeyDistribution is what SenderKeyCreate returns: the serialized
// SenderKeyDistributionMessage and the chain it hands out.
type SenderKeyDistribution struct {
	Body      []byte `json:"body"`
	ChainID   uint32 `json:"chainId"`
	Iteration uint32 `json:"iteration"`
}

// SenderKeyMessageInfo is what libsignal's deserializer reads from a SenderKeyMessage.
type SenderKeyMessageInfo struct {
	DistributionID string `json:"distributionId"`
	ChainID        uint32 `json:"chainId"`
	Iteration      uint32 `json:"iteration"`
	Ciphertext     []byte `json:"ciphertext"`
	Serialized     []byte `json:"serialized"`
}

// SenderKeyDistributionInfo is what libsignal's deserializer reads from a
// SenderKeyDistributionMessage.
type SenderKeyDistributionInfo struct {
	DistributionID string `json:"distributionId"`
	ChainID        uint32 `json:"chainId"`
	Iteration      uint32 `json:"iteration"`
	ChainKey       []byte `json:"chainKey"`
	Serialized     []byte `json:"serialized"`
}

// SenderKeyCreate makes (on first use) or reuses the peer's own sender key for
// distributionID and returns its distribution message
// (SenderKeyDistributionMessage.create).
func (p *Peer) SenderKeyCreate(distributionID string) (SenderKeyDistribution, error) {
	var d SenderKeyDistribution
	err := p.Call("senderKeyCreate", struct {
		DistributionID string `json:"distributionId"`
	}{distributionID}, &d)
	return d, err
}

// SenderKeyProcess stores a distribution message from sender
// (processSenderKeyDistributionMessage).
func (p *Peer) SenderKeyProcess(sender Address, body []byte) error {
	return p.Call("senderKeyProcess", struct {
		Peer Address `json:"peer"`
		Body []byte  `json:"body"`
	}{sender, nonNil(body)}, nil)
}

// GroupEncrypt encrypts plaintext with the peer's own sender key for distributionID
// (groupEncrypt) and returns the serialized SenderKeyMessage.
func (p *Peer) GroupEncrypt(distributionID string, plaintext []byte) ([]byte, error) {
	var c Ciphertext
	err := p.Call("groupEncrypt", struct {
		DistributionID string `json:"distributionId"`
		Plaintext      []byte `json:"plaintext"`
	}{distributionID, nonNil(plaintext)}, &c)
	if err == nil && c.Type != TypeSenderKey {
		err = &RemoteError{Method: "groupEncrypt", Code: -1, Kind: KindHarnessError, Message: "message of another type"}
	}
	return c.Body, err
}

// GroupDecrypt decrypts a SenderKeyMessage from sender (groupDecrypt).
func (p *Peer) GroupDecrypt(sender Address, body []byte) ([]byte, error) {
	var r struct {
		Plaintext []byte `json:"plaintext"`
	}
	err := p.Call("groupDecrypt", struct {
		Peer Address `json:"peer"`
		Body []byte  `json:"body"`
	}{sender, nonNil(body)}, &r)
	if err != nil {
		return nil, err
	}
	return nonNil(r.Plaintext), nil
}

// DeleteSenderKey forgets the peer's own sender key for distributionID, so that the next
// SenderKeyCreate makes a new chain: how libsignal clients rotate a sender key.
func (p *Peer) DeleteSenderKey(distributionID string) error {
	return p.Call("deleteSenderKey", struct {
		DistributionID string `json:"distributionId"`
	}{distributionID}, nil)
}

// ParseSenderKeyMessage runs libsignal's deserializer on a SenderKeyMessage.
func (p *Peer) ParseSenderKeyMessage(body []byte) (SenderKeyMessageInfo, error) {
	var m SenderKeyMessageInfo
	err := p.Call("parseSenderKeyMessage", struct {
		Body []byte `json:"body"`
	}{nonNil(body)}, &m)
	return m, err
}

// ParseSenderKeyDistribution runs libsignal's deserializer on a
// SenderKeyDistributionMessage.
func (p *Peer) ParseSenderKeyDistribution(body []byte) (SenderKeyDistributionInfo, error) {
	var m SenderKeyDistributionInfo
	err := p.Call("parseSenderKeyDistribution", struct {
		Body []byte `json:"body"`
	}{nonNil(body)}, &m)
	return m, err
}
