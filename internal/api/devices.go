package api

// Linked devices and provisioning: paths, bodies, limits and error codes.
//
// A device list (internal/devicelist) travels as its signed blob, a []byte
// (standard base64 in JSON). Every change of an account's devices carries the
// next version of the list, signed by the account's identity key.

// Paths of device linking and provisioning. {address} is a provisioning
// mailbox's address.
const (
	// PathDevices (POST): link a new device, authenticated by a link token.
	PathLinkTokens          = "/v1/devices/link-tokens"    // POST: a link token for a new device (authenticated)
	PathProvisioning        = "/v1/provisioning"           // POST: open a provisioning mailbox
	PathProvisioningMailbox = "/v1/provisioning/{address}" // GET: long-poll for the message; PUT: put it (authenticated)
)

// Limits of linking and provisioning.
const (
	// MaxProvisioningMessage bounds the ciphertext put in a provisioning
	// mailbox, in bytes.
	MaxProvisioningMessage = 64 << 10
	// LinkTokenTTL and ProvisioningTTL are how long a link token and a
	// provisioning mailbox stay valid, in milliseconds.
	LinkTokenTTL    = 10 * 60 * 1000
	ProvisioningTTL = 10 * 60 * 1000
)

// Error codes of linking.
const (
	// CodeInvalidLinkToken (403): the link token is unknown, used, expired,
	// or for another account.
	CodeInvalidLinkToken = "invalid_link_token"
	// CodeDeviceListConflict (409): the device list is not the next version
	// of the account's current one: another change came first. Fetch GET
	// /v1/devices, sign the next version again, and retry.
	CodeDeviceListConflict = "device_list_conflict"
)

// LinkTokenResponse is the body of POST /v1/devices/link-tokens: a
// single-use token for a new device, the device id reserved for it, and when
// the token expires (Unix milliseconds). The token is shown this once.
type LinkTokenResponse struct {
	Token    string `json:"token"`
	DeviceID uint32 `json:"device_id"`
	Expires  int64  `json:"expires"`
}

// LinkDeviceRequest is the body of POST /v1/devices: a new device joins the
// account AccountID with the link token one of its devices asked for. Keys
// must hold a signed prekey and a last-resort Kyber prekey, signed by the
// account's identity key; DeviceList is the account's next device list, with
// the reserved device id added. The answer is a RegisterResponse.
type LinkDeviceRequest struct {
	AccountID      string    `json:"account_id"`
	LinkToken      string    `json:"link_token"`
	RegistrationID uint32    `json:"registration_id"`
	Keys           KeyUpload `json:"keys"`
	DeviceList     []byte    `json:"device_list"`
	// UnidentifiedAccessKey, when present, replaces the account's
	// unidentified access key (UnidentifiedAccessKeySize bytes), as the
	// body of PUT /v1/accounts/me/attributes would; absent keeps it.
	UnidentifiedAccessKey []byte `json:"unidentified_access_key,omitempty"`
}

// RemoveDeviceRequest is the body of DELETE /v1/devices/{device}: the
// account's next device list, without the device.
type RemoveDeviceRequest struct {
	DeviceList []byte `json:"device_list"`
}

// ProvisioningAddress is the body of POST /v1/provisioning: the address of a
// new mailbox (22 characters of unpadded base64url, 128 random bits).
type ProvisioningAddress struct {
	Address string `json:"address"`
}

// ProvisioningMessage is the body of PUT /v1/provisioning/{address} and of
// the answer to GET: the ciphertext for the new device, 1 byte to
// MaxProvisioningMessage.
type ProvisioningMessage struct {
	Message []byte `json:"message"`
}
