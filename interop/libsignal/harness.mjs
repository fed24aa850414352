// Interop harness: one simulated libsignal peer over @signalapp/libsignal-client 0.103.0.
//
// The Go package in this directory (libsignal.go) starts `node harness.mjs` and drives it.
// Protocol: newline-delimited JSON. Each request line is
//
//   {"id": N, "method": "<command>", "params": {...}}
//
// and gets exactly one response line, in order:
//
//   {"id": N, "ok": true,  "result": {...}}
//   {"id": N, "ok": false, "error": "<text>", "code": C, "codeName": "...", "kind": "...", "operation": "..."}
//
// Bytes are base64 (standard alphabet, padded) strings. An error never ends the process.
// For a libsignal error, `code` is libsignal's ErrorCode number and `codeName` its name
// (DuplicatedMessage, UntrustedIdentity, ...; "Generic" for code 0); `kind` refines a
// Generic error by its message into the Rust SignalProtocolError variant it came from
// (InvalidMessage, SignatureValidationFailed, InvalidKyberPreKeyId, ...). For an error of the
// harness itself or of its arguments, `code` is -1 and `kind` is "BadRequest",
// "UnknownCommand" or "HarnessError". Nothing but response lines is written to stdout.
//
// Addresses: a peer is {"name": string, "deviceId": 1..127}. The local address passed to
// processPreKeyBundle / signalEncrypt / signalDecrypt is this peer's own {name, deviceId}.
// When both names are service ids (an ACI's UUID string, or "PNI:" and a UUID), libsignal
// binds both addresses into the SignalMessage inside each PreKeySignalMessage, and the
// recipient refuses one decrypted with other addresses (see TestHarnessAddressBinding).
//
// Commands (params -> result):
//
//   ping {} -> {libsignalVersion}
//   init {name, deviceId, registrationId?, identityPrivate?}
//       Resets every store. Generates an identity key pair, or imports the 32-byte private key.
//       A missing or 0 registrationId picks a random one in 1..16380.
//       -> {name, deviceId, registrationId, identityKey (33 bytes, 0x05 ...)}
//   newBundle {withOneTimePreKey?, preKeyId?, signedPreKeyId?, kyberPreKeyId?, kyberLastResort?}
//       Generates and stores a signed prekey, a signed Kyber-1024 prekey and, if asked, a
//       one-time EC prekey (ids default to counters). A one-time Kyber prekey is removed when
//       used; a last-resort one is kept, and each (signed prekey id, base key) pair it is used
//       with is remembered so that its reuse is rejected.
//       -> {registrationId, deviceId, preKeyId?, preKeyPublic?, signedPreKeyId,
//           signedPreKeyPublic, signedPreKeySignature, kyberPreKeyId, kyberPreKeyPublic
//           (1569 bytes, 0x08 ...), kyberPreKeySignature, identityKey}
//   processBundle {peer, bundle: <newBundle's result fields; preKeyPublic absent = none>, now?}
//       -> {}
//   encrypt {peer, plaintext, now?} -> {type: 2|3, body}
//   decrypt {peer, type: 2|3, body} -> {plaintext}
//   exportState {} -> {blob}    (base64 of a JSON document holding every store)
//   importState {blob} -> the same result as init
//   sessionInfo {peer, now?}
//       -> {exists, hasCurrentState, remoteRegistrationId, localRegistrationId,
//           sessionVersion, previousSessions, pendingPreKey, record (SessionRecord bytes)}
//   archiveSession {peer} -> {}
//   deleteSession {peer} -> {}
//   saveIdentity {peer, identityKey} -> {replaced}
//   getIdentity {peer} -> {identityKey (or null)}
//   fingerprint {version, iterations, localId, localKey, remoteId, remoteKey}
//       -> {displayable (60 digits), scannable}
//   fingerprintCompare {local, scanned}
//       ScannableFingerprint(local).compare(ScannableFingerprint(scanned)) -> {match}
//   sign {message} -> {signature}          (with the identity private key, XEdDSA)
//   verify {publicKey, message, signature} -> {valid}
//   parseMessage {type: 2|3, body}
//       -> for 2: {type, version, counter, body (the AES-CBC ciphertext), pqRatchet, serialized}
//          for 3: {type, version, registrationId, preKeyId (or null), signedPreKeyId, serialized}
//          (the JS API does not expose the inner SignalMessage of a PreKeySignalMessage)
//   hkdf {length, ikm, info, salt?} -> {okm}
//
// Sender keys (group messages). distributionId is a hyphenated UUID string; `sender` is
// an address and defaults to this peer's own.
//
//   senderKeyCreate {distributionId, sender?}
//       SenderKeyDistributionMessage.create: makes the sender key on first use.
//       -> {body (serialized distribution message), chainId, iteration}
//   senderKeyProcess {peer, body} -> {}    (processSenderKeyDistributionMessage from peer)
//   groupEncrypt {distributionId, plaintext} -> {type: 7, body}   (as this peer)
//   groupDecrypt {peer, body} -> {plaintext}
//   deleteSenderKey {distributionId, sender?} -> {}   (forget the record: the next
//       senderKeyCreate makes a new chain, which is how libsignal clients rotate)
//   parseSenderKeyMessage {body} -> {distributionId, chainId, iteration, ciphertext, serialized}
//   parseSenderKeyDistribution {body} -> {distributionId, chainId, iteration, chainKey, serialized}
//
// Sealed sender. Certificates and contents are serialized bytes; times are milliseconds
// since 1970; a service id is libsignal's string form (a UUID for an ACI, "PNI:" and a
// UUID for a PNI).
//
//   serverCertificateNew {keyId, serverKey, trustRootPrivate} -> <serverCertificateParse's result>
//   serverCertificateParse {serialized} -> {keyId, key, certificate, signature, serialized}
//   senderCertificateNew {senderUuid, senderE164?, deviceId, senderKey, expiration,
//       serverCertificate, serverPrivate} -> <senderCertificateParse's result>
//   senderCertificateParse {serialized}
//       -> {senderUuid, senderE164 (or null), deviceId, key, expiration, serverCertificate,
//           certificate, signature, serialized}
//   senderCertificateValidate {serialized, trustRoots: [bytes], time} -> {valid}
//       (validateWithTrustRoots; a certificate libsignal cannot check is an error)
//   usmcCreate {senderCertificate, plaintext, peer? | distributionId?, contentHint?, groupId?}
//       Encrypts plaintext for peer (signalEncrypt: type 2 or 3) or with this peer's sender
//       key for distributionId (groupEncrypt: type 7) and wraps it in an
//       UnidentifiedSenderMessageContent. -> <usmcParse's result>
//   usmcParse {usmc} -> {type, contents, senderCertificate, contentHint, groupId (or null), serialized}
//   sealedSenderEncrypt {peer, usmc} -> {body}
//       (sealed sender v1 to the identity key stored for peer)
//   sealedSenderMultiRecipientEncrypt {recipients: [address], excludedRecipients?: [serviceId], usmc}
//       -> {body}   (a v2 SentMessage; needs a session with every recipient address)
//   sealedSenderDecryptToUsmc {body} -> <usmcParse's result>   (v1 or a v2 ReceivedMessage)
//   sealedSenderDecrypt {body, trustRoot, time}
//       -> {senderUuid, senderE164, deviceId, plaintext}   (sealedSenderDecryptMessage as this
//       peer: validates the certificate, then decrypts the session message inside)
//   multiRecipientParse {body}
//       SealedSenderMultiRecipientMessage: -> {recipients: [{serviceId, deviceIds,
//       registrationIds, message (its ReceivedMessage)}], excluded: [serviceId]}
//   multiRecipientForSingleRecipient {body} -> {message}
//       (sealedSenderMultiRecipientMessageForSingleRecipient, for a one-recipient SentMessage)

import * as readline from 'node:readline';
import { createRequire } from 'node:module';

import * as S from '@signalapp/libsignal-client';
import SealedSenderMultiRecipientMessage from '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js';

const require = createRequire(import.meta.url);
const LIBSIGNAL_VERSION = require('@signalapp/libsignal-client/package.json').version;

// ---------------------------------------------------------------------------
// Argument helpers. Every failure here is a BadRequest.

class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadRequest';
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytes(params, field, { optional = false } = {}) {
  const v = params[field];
  if (v === undefined || v === null) {
    if (optional) return null;
    throw new BadRequest(`missing bytes field ${field}`);
  }
  if (typeof v !== 'string' || !BASE64.test(v)) {
    throw new BadRequest(`field ${field} is not base64`);
  }
  return new Uint8Array(Buffer.from(v, 'base64'));
}

function b64(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64');
}

function uint(params, field, { optional = false, max = 0xffffffff } = {}) {
  const v = params[field];
  if (v === undefined || v === null) {
    if (optional) return null;
    throw new BadRequest(`missing integer field ${field}`);
  }
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new BadRequest(`field ${field} is not an integer in [0, ${max}]`);
  }
  return v;
}

function str(params, field) {
  const v = params[field];
  if (typeof v !== 'string') throw new BadRequest(`missing string field ${field}`);
  return v;
}

function address(params, field = 'peer') {
  const a = params[field];
  if (a === null || typeof a !== 'object') throw new BadRequest(`missing address ${field}`);
  return S.ProtocolAddress.new(str(a, 'name'), uint(a, 'deviceId'));
}

function nowParam(params) {
  const ms = uint(params, 'now', { optional: true, max: Number.MAX_SAFE_INTEGER });
  return ms === null ? undefined : new Date(ms);
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function distributionId(params) {
  const v = str(params, 'distributionId');
  if (!UUID.test(v)) throw new BadRequest('field distributionId is not a hyphenated UUID');
  return v.toLowerCase();
}

function senderAddress(params) {
  return params.sender === undefined || params.sender === null ? peer.localAddress() : address(params, 'sender');
}

function addrKey(addr) {
  return JSON.stringify([addr.name(), addr.deviceId()]);
}

// ---------------------------------------------------------------------------
// Stores. Records are kept serialized, as a real store keeps them, so that every load goes
// through libsignal's deserializer.

class Peer {
  constructor() {
    this.reset();
  }

  reset() {
    this.name = null;
    this.deviceId = null;
    this.registrationId = null;
    this.identity = null; // IdentityKeyPair
    this.sessions = new Map(); // addrKey -> SessionRecord bytes
    this.identities = new Map(); // addrKey -> PublicKey bytes
    this.preKeys = new Map(); // id -> PreKeyRecord bytes
    this.signedPreKeys = new Map(); // id -> SignedPreKeyRecord bytes
    this.kyberPreKeys = new Map(); // id -> {record: bytes, lastResort: bool, used: Set<string>}
    this.senderKeys = new Map(); // JSON [name, deviceId, distributionId] -> SenderKeyRecord bytes
    this.nextPreKeyId = 1;
    this.nextSignedPreKeyId = 1;
    this.nextKyberPreKeyId = 1;
  }

  requireInit() {
    if (this.identity === null) throw new BadRequest('peer not initialized: call init or importState first');
  }

  localAddress() {
    return S.ProtocolAddress.new(this.name, this.deviceId);
  }

  toJSON() {
    const kyber = [];
    for (const [id, k] of this.kyberPreKeys) {
      kyber.push({ id, record: b64(k.record), lastResort: k.lastResort, used: [...k.used] });
    }
    const pairs = (m) => [...m].map(([k, v]) => [k, b64(v)]);
    return {
      format: 'doorless-libsignal-harness-state/1',
      libsignalVersion: LIBSIGNAL_VERSION,
      name: this.name,
      deviceId: this.deviceId,
      registrationId: this.registrationId,
      identity: b64(this.identity.serialize()),
      sessions: pairs(this.sessions),
      identities: pairs(this.identities),
      preKeys: pairs(this.preKeys),
      signedPreKeys: pairs(this.signedPreKeys),
      kyberPreKeys: kyber,
      senderKeys: pairs(this.senderKeys),
      next: [this.nextPreKeyId, this.nextSignedPreKeyId, this.nextKyberPreKeyId],
    };
  }

  loadJSON(doc) {
    if (doc.format !== 'doorless-libsignal-harness-state/1') throw new BadRequest('unknown state format');
    const fromB64 = (s) => new Uint8Array(Buffer.from(s, 'base64'));
    this.reset();
    // Deserialize every record once so that a corrupt blob fails here, not later.
    this.identity = S.IdentityKeyPair.deserialize(fromB64(doc.identity));
    S.ProtocolAddress.new(doc.name, doc.deviceId);
    this.name = doc.name;
    this.deviceId = doc.deviceId;
    this.registrationId = doc.registrationId;
    for (const [k, v] of doc.sessions) this.sessions.set(k, S.SessionRecord.deserialize(fromB64(v)).serialize());
    for (const [k, v] of doc.identities) this.identities.set(k, S.PublicKey.deserialize(fromB64(v)).serialize());
    for (const [k, v] of doc.preKeys) this.preKeys.set(k, S.PreKeyRecord.deserialize(fromB64(v)).serialize());
    for (const [k, v] of doc.signedPreKeys) {
      this.signedPreKeys.set(k, S.SignedPreKeyRecord.deserialize(fromB64(v)).serialize());
    }
    for (const k of doc.kyberPreKeys) {
      this.kyberPreKeys.set(k.id, {
        record: S.KyberPreKeyRecord.deserialize(fromB64(k.record)).serialize(),
        lastResort: Boolean(k.lastResort),
        used: new Set(k.used),
      });
    }
    for (const [k, v] of doc.senderKeys ?? []) {
      this.senderKeys.set(k, S.SenderKeyRecord.deserialize(fromB64(v)).serialize());
    }
    [this.nextPreKeyId, this.nextSignedPreKeyId, this.nextKyberPreKeyId] = doc.next;
  }
}

class SessionStore extends S.SessionStore {
  constructor(peer) {
    super();
    this.peer = peer;
  }
  async saveSession(name, record) {
    this.peer.sessions.set(addrKey(name), record.serialize());
  }
  async getSession(name) {
    const b = this.peer.sessions.get(addrKey(name));
    return b === undefined ? null : S.SessionRecord.deserialize(b);
  }
  async getExistingSessions(addresses) {
    return addresses.map((a) => {
      const b = this.peer.sessions.get(addrKey(a));
      if (b === undefined) throw new Error(`no session for ${a.toString()}`);
      return S.SessionRecord.deserialize(b);
    });
  }
}

// Trust on first use, as libsignal's InMemIdentityKeyStore: an address is trusted with a
// key when none is stored for it yet or the stored one is the same.
class IdentityKeyStore extends S.IdentityKeyStore {
  constructor(peer) {
    super();
    this.peer = peer;
  }
  async getIdentityKey() {
    return this.peer.identity.privateKey;
  }
  async getLocalRegistrationId() {
    return this.peer.registrationId;
  }
  async saveIdentity(name, key) {
    const k = addrKey(name);
    const old = this.peer.identities.get(k);
    const b = key.serialize();
    this.peer.identities.set(k, b);
    if (old !== undefined && !Buffer.from(old).equals(Buffer.from(b))) return S.IdentityChange.ReplacedExisting;
    return S.IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(name, key, _direction) {
    const old = this.peer.identities.get(addrKey(name));
    return old === undefined || Buffer.from(old).equals(Buffer.from(key.serialize()));
  }
  async getIdentity(name) {
    const b = this.peer.identities.get(addrKey(name));
    return b === undefined ? null : S.PublicKey.deserialize(b);
  }
}

class PreKeyStore extends S.PreKeyStore {
  constructor(peer) {
    super();
    this.peer = peer;
  }
  async savePreKey(id, record) {
    this.peer.preKeys.set(id, record.serialize());
  }
  async getPreKey(id) {
    const b = this.peer.preKeys.get(id);
    if (b === undefined) throw new Error(`no prekey with id ${id}`);
    return S.PreKeyRecord.deserialize(b);
  }
  async removePreKey(id) {
    this.peer.preKeys.delete(id);
  }
}

class SignedPreKeyStore extends S.SignedPreKeyStore {
  constructor(peer) {
    super();
    this.peer = peer;
  }
  async saveSignedPreKey(id, record) {
    this.peer.signedPreKeys.set(id, record.serialize());
  }
  async getSignedPreKey(id) {
    const b = this.peer.signedPreKeys.get(id);
    if (b === undefined) throw new Error(`no signed prekey with id ${id}`);
    return S.SignedPreKeyRecord.deserialize(b);
  }
}

class KyberPreKeyStore extends S.KyberPreKeyStore {
  constructor(peer) {
    super();
    this.peer = peer;
  }
  async saveKyberPreKey(id, record) {
    this.peer.kyberPreKeys.set(id, { record: record.serialize(), lastResort: false, used: new Set() });
  }
  async getKyberPreKey(id) {
    const k = this.peer.kyberPreKeys.get(id);
    if (k === undefined) throw new Error(`no kyber prekey with id ${id}`);
    return S.KyberPreKeyRecord.deserialize(k.record);
  }
  async markKyberPreKeyUsed(id, signedPreKeyId, baseKey) {
    const k = this.peer.kyberPreKeys.get(id);
    if (k === undefined) throw new Error(`no kyber prekey with id ${id}`);
    if (!k.lastResort) {
      this.peer.kyberPreKeys.delete(id);
      return;
    }
    const use = `${signedPreKeyId}:${b64(baseKey.serialize())}`;
    if (k.used.has(use)) throw new Error(`last-resort kyber prekey ${id} reused with the same base key`);
    k.used.add(use);
  }
}

function senderKeyKey(sender, distributionId) {
  return JSON.stringify([sender.name(), sender.deviceId(), distributionId.toLowerCase()]);
}

class SenderKeyStore extends S.SenderKeyStore {
  constructor(peer) {
    super();
    this.peer = peer;
  }
  async saveSenderKey(sender, distributionId, record) {
    this.peer.senderKeys.set(senderKeyKey(sender, distributionId), record.serialize());
  }
  async getSenderKey(sender, distributionId) {
    const b = this.peer.senderKeys.get(senderKeyKey(sender, distributionId));
    return b === undefined ? null : S.SenderKeyRecord.deserialize(b);
  }
}

const peer = new Peer();
const stores = {
  session: new SessionStore(peer),
  identity: new IdentityKeyStore(peer),
  preKey: new PreKeyStore(peer),
  signedPreKey: new SignedPreKeyStore(peer),
  kyberPreKey: new KyberPreKeyStore(peer),
  senderKey: new SenderKeyStore(peer),
};

// ---------------------------------------------------------------------------
// A minimal protobuf reader, only to report a SessionRecord's version and shape
// (RecordStructure: current_session = 1, previous_sessions = 2; SessionStructure:
// session_version = 1, pending_pre_key = 9).

function readFields(buf) {
  const fields = [];
  let i = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) fields.push({ field, value: varint() });
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = Number(varint());
      fields.push({ field, bytes: buf.subarray(i, i + len) });
      i += len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return fields;
}

function describeRecord(serialized) {
  const top = readFields(serialized);
  const current = top.find((f) => f.field === 1 && f.bytes !== undefined);
  const previousSessions = top.filter((f) => f.field === 2).length;
  let sessionVersion = 0;
  let pendingPreKey = false;
  if (current !== undefined) {
    for (const f of readFields(current.bytes)) {
      if (f.field === 1 && f.value !== undefined) sessionVersion = Number(f.value);
      if (f.field === 9) pendingPreKey = true;
    }
  }
  return { sessionVersion, previousSessions, pendingPreKey };
}

// ---------------------------------------------------------------------------
// Commands.

function identityResult() {
  return {
    name: peer.name,
    deviceId: peer.deviceId,
    registrationId: peer.registrationId,
    identityKey: b64(peer.identity.publicKey.serialize()),
  };
}

function bundleFromParams(b) {
  if (b === null || typeof b !== 'object') throw new BadRequest('missing bundle');
  const preKeyPublic = bytes(b, 'preKeyPublic', { optional: true });
  return S.PreKeyBundle.new(
    uint(b, 'registrationId'),
    uint(b, 'deviceId'),
    preKeyPublic === null ? null : uint(b, 'preKeyId'),
    preKeyPublic === null ? null : S.PublicKey.deserialize(preKeyPublic),
    uint(b, 'signedPreKeyId'),
    S.PublicKey.deserialize(bytes(b, 'signedPreKeyPublic')),
    bytes(b, 'signedPreKeySignature'),
    S.PublicKey.deserialize(bytes(b, 'identityKey')),
    uint(b, 'kyberPreKeyId'),
    S.KEMPublicKey.deserialize(bytes(b, 'kyberPreKeyPublic')),
    bytes(b, 'kyberPreKeySignature'),
  );
}

function messageType(params) {
  const t = uint(params, 'type');
  if (t !== S.CiphertextMessageType.Whisper && t !== S.CiphertextMessageType.PreKey) {
    throw new BadRequest(`unsupported message type ${t} (want 2 or 3)`);
  }
  return t;
}

function describeSignalMessage(m) {
  return {
    version: m.messageVersion(),
    counter: m.counter(),
    body: b64(m.body()),
    pqRatchet: b64(m.pqRatchet()),
    serialized: b64(m.serialize()),
  };
}

function describeServerCertificate(c) {
  return {
    keyId: c.keyId(),
    key: b64(c.key().serialize()),
    certificate: b64(c.certificateData()),
    signature: b64(c.signature()),
    serialized: b64(c.serialize()),
  };
}

function describeSenderCertificate(c) {
  return {
    senderUuid: c.senderUuid(),
    senderE164: c.senderE164(),
    deviceId: c.senderDeviceId(),
    key: b64(c.key().serialize()),
    expiration: c.expiration(),
    serverCertificate: b64(c.serverCertificate().serialize()),
    certificate: b64(c.certificate()),
    signature: b64(c.signature()),
    serialized: b64(c.serialize()),
  };
}

function describeUsmc(u) {
  const groupId = u.groupId();
  return {
    type: u.msgType(),
    contents: b64(u.contents()),
    senderCertificate: b64(u.senderCertificate().serialize()),
    contentHint: u.contentHint(),
    groupId: groupId === null ? null : b64(groupId),
    serialized: b64(u.serialize()),
  };
}

function timeParam(params, field = 'time') {
  return uint(params, field, { max: Number.MAX_SAFE_INTEGER });
}

const commands = {
  async ping() {
    return { libsignalVersion: LIBSIGNAL_VERSION };
  },

  async init(p) {
    const name = str(p, 'name');
    const deviceId = uint(p, 'deviceId');
    S.ProtocolAddress.new(name, deviceId); // validates the device id range
    // Signal's registration ids are 14 bits; libsignal itself stores any u32.
    let registrationId = uint(p, 'registrationId', { optional: true });
    if (registrationId === null || registrationId === 0) registrationId = 1 + Math.floor(Math.random() * 16380);
    const priv = bytes(p, 'identityPrivate', { optional: true });
    let identity;
    if (priv === null) {
      identity = S.IdentityKeyPair.generate();
    } else {
      const sk = S.PrivateKey.deserialize(priv);
      identity = new S.IdentityKeyPair(sk.getPublicKey(), sk);
    }
    peer.reset();
    peer.name = name;
    peer.deviceId = deviceId;
    peer.registrationId = registrationId;
    peer.identity = identity;
    return identityResult();
  },

  async newBundle(p) {
    peer.requireInit();
    const withOneTime = Boolean(p.withOneTimePreKey);
    const signedPreKeyId = uint(p, 'signedPreKeyId', { optional: true }) ?? peer.nextSignedPreKeyId++;
    const kyberPreKeyId = uint(p, 'kyberPreKeyId', { optional: true }) ?? peer.nextKyberPreKeyId++;
    const lastResort = Boolean(p.kyberLastResort);
    const now = Date.now();
    const sk = peer.identity.privateKey;

    const signed = S.PrivateKey.generate();
    const signedSig = sk.sign(signed.getPublicKey().serialize());
    await stores.signedPreKey.saveSignedPreKey(
      signedPreKeyId,
      S.SignedPreKeyRecord.new(signedPreKeyId, now, signed.getPublicKey(), signed, signedSig),
    );

    const kem = S.KEMKeyPair.generate();
    const kemSig = sk.sign(kem.getPublicKey().serialize());
    await stores.kyberPreKey.saveKyberPreKey(kyberPreKeyId, S.KyberPreKeyRecord.new(kyberPreKeyId, now, kem, kemSig));
    peer.kyberPreKeys.get(kyberPreKeyId).lastResort = lastResort;

    const result = {
      registrationId: peer.registrationId,
      deviceId: peer.deviceId,
      signedPreKeyId,
      signedPreKeyPublic: b64(signed.getPublicKey().serialize()),
      signedPreKeySignature: b64(signedSig),
      kyberPreKeyId,
      kyberPreKeyPublic: b64(kem.getPublicKey().serialize()),
      kyberPreKeySignature: b64(kemSig),
      identityKey: b64(peer.identity.publicKey.serialize()),
    };
    if (withOneTime) {
      const preKeyId = uint(p, 'preKeyId', { optional: true }) ?? peer.nextPreKeyId++;
      const pk = S.PrivateKey.generate();
      await stores.preKey.savePreKey(preKeyId, S.PreKeyRecord.new(preKeyId, pk.getPublicKey(), pk));
      result.preKeyId = preKeyId;
      result.preKeyPublic = b64(pk.getPublicKey().serialize());
    }
    return result;
  },

  async processBundle(p) {
    peer.requireInit();
    const bundle = bundleFromParams(p.bundle);
    await S.processPreKeyBundle(
      bundle,
      address(p),
      peer.localAddress(),
      stores.session,
      stores.identity,
      nowParam(p),
    );
    return {};
  },

  async encrypt(p) {
    peer.requireInit();
    const m = await S.signalEncrypt(
      bytes(p, 'plaintext'),
      address(p),
      peer.localAddress(),
      stores.session,
      stores.identity,
      nowParam(p),
    );
    return { type: m.type(), body: b64(m.serialize()) };
  },

  async decrypt(p) {
    peer.requireInit();
    const addr = address(p);
    const body = bytes(p, 'body');
    let plaintext;
    if (messageType(p) === S.CiphertextMessageType.PreKey) {
      plaintext = await S.signalDecryptPreKey(
        S.PreKeySignalMessage.deserialize(body),
        addr,
        peer.localAddress(),
        stores.session,
        stores.identity,
        stores.preKey,
        stores.signedPreKey,
        stores.kyberPreKey,
      );
    } else {
      plaintext = await S.signalDecrypt(
        S.SignalMessage.deserialize(body),
        addr,
        peer.localAddress(),
        stores.session,
        stores.identity,
      );
    }
    return { plaintext: b64(plaintext) };
  },

  async exportState() {
    peer.requireInit();
    return { blob: Buffer.from(JSON.stringify(peer.toJSON())).toString('base64') };
  },

  async importState(p) {
    const blob = bytes(p, 'blob');
    let doc;
    try {
      doc = JSON.parse(Buffer.from(blob).toString('utf8'));
    } catch (e) {
      throw new BadRequest(`state blob is not JSON: ${e.message}`);
    }
    peer.loadJSON(doc);
    return identityResult();
  },

  async sessionInfo(p) {
    peer.requireInit();
    const rec = await stores.session.getSession(address(p));
    if (rec === null) {
      return {
        exists: false,
        hasCurrentState: false,
        remoteRegistrationId: 0,
        localRegistrationId: 0,
        sessionVersion: 0,
        previousSessions: 0,
        pendingPreKey: false,
        record: null,
      };
    }
    const serialized = rec.serialize();
    const hasCurrentState = rec.hasCurrentState(nowParam(p));
    return {
      exists: true,
      hasCurrentState,
      // Registration ids live in the current state; libsignal throws without one.
      remoteRegistrationId: hasCurrentState ? rec.remoteRegistrationId() : 0,
      localRegistrationId: hasCurrentState ? rec.localRegistrationId() : 0,
      ...describeRecord(serialized),
      record: b64(serialized),
    };
  },

  async archiveSession(p) {
    peer.requireInit();
    const addr = address(p);
    const rec = await stores.session.getSession(addr);
    if (rec !== null) {
      rec.archiveCurrentState();
      await stores.session.saveSession(addr, rec);
    }
    return {};
  },

  async deleteSession(p) {
    peer.requireInit();
    peer.sessions.delete(addrKey(address(p)));
    return {};
  },

  async saveIdentity(p) {
    peer.requireInit();
    const change = await stores.identity.saveIdentity(address(p), S.PublicKey.deserialize(bytes(p, 'identityKey')));
    return { replaced: change === S.IdentityChange.ReplacedExisting };
  },

  async getIdentity(p) {
    peer.requireInit();
    const k = await stores.identity.getIdentity(address(p));
    return { identityKey: k === null ? null : b64(k.serialize()) };
  },

  async fingerprint(p) {
    const f = S.Fingerprint.new(
      uint(p, 'iterations'),
      uint(p, 'version'),
      bytes(p, 'localId'),
      S.PublicKey.deserialize(bytes(p, 'localKey')),
      bytes(p, 'remoteId'),
      S.PublicKey.deserialize(bytes(p, 'remoteKey')),
    );
    return {
      displayable: f.displayableFingerprint().toString(),
      scannable: b64(f.scannableFingerprint().toBuffer()),
    };
  },

  async fingerprintCompare(p) {
    const local = S.ScannableFingerprint._fromBuffer(bytes(p, 'local'));
    const scanned = S.ScannableFingerprint._fromBuffer(bytes(p, 'scanned'));
    return { match: local.compare(scanned) };
  },

  async sign(p) {
    peer.requireInit();
    return { signature: b64(peer.identity.privateKey.sign(bytes(p, 'message'))) };
  },

  async verify(p) {
    const key = S.PublicKey.deserialize(bytes(p, 'publicKey'));
    return { valid: key.verify(bytes(p, 'message'), bytes(p, 'signature')) };
  },

  async parseMessage(p) {
    const body = bytes(p, 'body');
    if (messageType(p) === S.CiphertextMessageType.Whisper) {
      return { type: 2, ...describeSignalMessage(S.SignalMessage.deserialize(body)) };
    }
    const m = S.PreKeySignalMessage.deserialize(body);
    // The inner SignalMessage is not exposed by the JS API; its counter etc. are read by
    // decrypting, so only the PreKey envelope's fields are reported here.
    return {
      type: 3,
      version: m.version(),
      registrationId: m.registrationId(),
      preKeyId: m.preKeyId(),
      signedPreKeyId: m.signedPreKeyId(),
      serialized: b64(m.serialize()),
    };
  },

  async hkdf(p) {
    const okm = S.hkdf(
      uint(p, 'length'),
      bytes(p, 'ikm'),
      bytes(p, 'info', { optional: true }) ?? new Uint8Array(0),
      bytes(p, 'salt', { optional: true }),
    );
    return { okm: b64(okm) };
  },

  async senderKeyCreate(p) {
    peer.requireInit();
    const m = await S.SenderKeyDistributionMessage.create(senderAddress(p), distributionId(p), stores.senderKey);
    return { body: b64(m.serialize()), chainId: m.chainId(), iteration: m.iteration() };
  },

  async senderKeyProcess(p) {
    peer.requireInit();
    const m = S.SenderKeyDistributionMessage.deserialize(bytes(p, 'body'));
    await S.processSenderKeyDistributionMessage(address(p), m, stores.senderKey);
    return {};
  },

  async groupEncrypt(p) {
    peer.requireInit();
    const m = await S.groupEncrypt(peer.localAddress(), distributionId(p), stores.senderKey, bytes(p, 'plaintext'));
    return { type: m.type(), body: b64(m.serialize()) };
  },

  async groupDecrypt(p) {
    peer.requireInit();
    const plaintext = await S.groupDecrypt(address(p), stores.senderKey, bytes(p, 'body'));
    return { plaintext: b64(plaintext) };
  },

  async deleteSenderKey(p) {
    peer.requireInit();
    peer.senderKeys.delete(senderKeyKey(senderAddress(p), distributionId(p)));
    return {};
  },

  async parseSenderKeyMessage(p) {
    const m = S.SenderKeyMessage.deserialize(bytes(p, 'body'));
    return {
      distributionId: m.distributionId(),
      chainId: m.chainId(),
      iteration: m.iteration(),
      ciphertext: b64(m.ciphertext()),
      serialized: b64(m.serialize()),
    };
  },

  async parseSenderKeyDistribution(p) {
    const m = S.SenderKeyDistributionMessage.deserialize(bytes(p, 'body'));
    return {
      distributionId: m.distributionId(),
      chainId: m.chainId(),
      iteration: m.iteration(),
      chainKey: b64(m.chainKey()),
      serialized: b64(m.serialize()),
    };
  },

  async serverCertificateNew(p) {
    const c = S.ServerCertificate.new(
      uint(p, 'keyId'),
      S.PublicKey.deserialize(bytes(p, 'serverKey')),
      S.PrivateKey.deserialize(bytes(p, 'trustRootPrivate')),
    );
    return describeServerCertificate(c);
  },

  async serverCertificateParse(p) {
    return describeServerCertificate(S.ServerCertificate.deserialize(bytes(p, 'serialized')));
  },

  async senderCertificateNew(p) {
    const e164 = p.senderE164 === undefined || p.senderE164 === null ? null : str(p, 'senderE164');
    const c = S.SenderCertificate.new(
      str(p, 'senderUuid'),
      e164,
      uint(p, 'deviceId'),
      S.PublicKey.deserialize(bytes(p, 'senderKey')),
      timeParam(p, 'expiration'),
      S.ServerCertificate.deserialize(bytes(p, 'serverCertificate')),
      S.PrivateKey.deserialize(bytes(p, 'serverPrivate')),
    );
    return describeSenderCertificate(c);
  },

  async senderCertificateParse(p) {
    return describeSenderCertificate(S.SenderCertificate.deserialize(bytes(p, 'serialized')));
  },

  async senderCertificateValidate(p) {
    const c = S.SenderCertificate.deserialize(bytes(p, 'serialized'));
    if (!Array.isArray(p.trustRoots)) throw new BadRequest('trustRoots must be an array');
    const roots = p.trustRoots.map((_, i) => S.PublicKey.deserialize(bytes(p.trustRoots, i)));
    return { valid: c.validateWithTrustRoots(roots, timeParam(p)) };
  },

  async usmcCreate(p) {
    peer.requireInit();
    const cert = S.SenderCertificate.deserialize(bytes(p, 'senderCertificate'));
    const plaintext = bytes(p, 'plaintext');
    let message;
    if (p.distributionId !== undefined && p.distributionId !== null) {
      message = await S.groupEncrypt(peer.localAddress(), distributionId(p), stores.senderKey, plaintext);
    } else {
      message = await S.signalEncrypt(plaintext, address(p), peer.localAddress(), stores.session, stores.identity);
    }
    const hint = uint(p, 'contentHint', { optional: true }) ?? S.ContentHint.Default;
    const u = S.UnidentifiedSenderMessageContent.new(message, cert, hint, bytes(p, 'groupId', { optional: true }));
    return describeUsmc(u);
  },

  async usmcParse(p) {
    return describeUsmc(S.UnidentifiedSenderMessageContent.deserialize(bytes(p, 'usmc')));
  },

  async sealedSenderEncrypt(p) {
    peer.requireInit();
    const u = S.UnidentifiedSenderMessageContent.deserialize(bytes(p, 'usmc'));
    return { body: b64(await S.sealedSenderEncrypt(u, address(p), stores.identity)) };
  },

  async sealedSenderMultiRecipientEncrypt(p) {
    peer.requireInit();
    const u = S.UnidentifiedSenderMessageContent.deserialize(bytes(p, 'usmc'));
    if (!Array.isArray(p.recipients)) throw new BadRequest('recipients must be an array');
    const recipients = p.recipients.map((_, i) => address(p.recipients, i));
    const excluded = (p.excludedRecipients ?? []).map((s) => {
      if (typeof s !== 'string') throw new BadRequest('excludedRecipients must be service id strings');
      return S.ServiceId.parseFromServiceIdString(s);
    });
    const body = await S.sealedSenderMultiRecipientEncrypt({
      content: u,
      recipients,
      excludedRecipients: excluded,
      identityStore: stores.identity,
      sessionStore: stores.session,
    });
    return { body: b64(body) };
  },

  async sealedSenderDecryptToUsmc(p) {
    peer.requireInit();
    return describeUsmc(await S.sealedSenderDecryptToUsmc(bytes(p, 'body'), stores.identity));
  },

  async sealedSenderDecrypt(p) {
    peer.requireInit();
    const r = await S.sealedSenderDecryptMessage(
      bytes(p, 'body'),
      S.PublicKey.deserialize(bytes(p, 'trustRoot')),
      timeParam(p),
      null,
      peer.name,
      peer.deviceId,
      stores.session,
      stores.identity,
      stores.preKey,
      stores.signedPreKey,
      stores.kyberPreKey,
    );
    return {
      senderUuid: r.senderUuid(),
      senderE164: r.senderE164(),
      deviceId: r.deviceId(),
      plaintext: b64(r.message()),
    };
  },

  async multiRecipientParse(p) {
    const m = new SealedSenderMultiRecipientMessage(bytes(p, 'body'));
    const recipients = Object.entries(m.recipientsByServiceIdString()).map(([serviceId, r]) => ({
      serviceId,
      deviceIds: [...r.deviceIds],
      registrationIds: [...r.registrationIds],
      message: b64(m.messageForRecipient(r)),
    }));
    return { recipients, excluded: [...m.excludedRecipientServiceIdStrings()] };
  },

  async multiRecipientForSingleRecipient(p) {
    return { message: b64(S.sealedSenderMultiRecipientMessageForSingleRecipient(bytes(p, 'body'))) };
  },
};

// ---------------------------------------------------------------------------
// Errors: every failure becomes one response line.

// Display strings of the Rust SignalProtocolError / fingerprint::Error variants that the
// Node bridge reports as a Generic LibSignalError; the first match names the `kind`.
const GENERIC_KINDS = [
  [/^invalid \w+ message: /, 'InvalidMessage'],
  [/^invalid signature detected/, 'SignatureValidationFailed'],
  [/^invalid sealed sender message: /, 'InvalidSealedSenderMessage'],
  [/^unknown sealed sender message version/, 'UnknownSealedSenderVersion'],
  [/^unknown server certificate ID/, 'UnknownSealedSenderServerCertificateId'],
  [/^session (with .* )?not found/, 'SessionNotFound'],
  [/^missing sender key state/, 'NoSenderKeyState'],
  [/^invalid prekey identifier/, 'InvalidPreKeyId'],
  [/^invalid signed prekey identifier/, 'InvalidSignedPreKeyId'],
  [/^invalid Kyber prekey identifier/, 'InvalidKyberPreKeyId'],
  [/^protobuf encoding was invalid/, 'InvalidProtobufEncoding'],
  [/^ciphertext serialized bytes were too short/, 'CiphertextMessageTooShort'],
  [/^ciphertext version was too old/, 'LegacyCiphertextVersion'],
  [/^ciphertext version was unrecognized/, 'UnrecognizedCiphertextVersion'],
  [/^unrecognized message version/, 'UnrecognizedMessageVersion'],
  [/^no key type identifier/, 'NoKeyTypeIdentifier'],
  [/^bad key type/, 'BadKeyType'],
  [/^bad key length/, 'BadKeyLength'],
  [/^invalid key agreement/, 'InvalidKeyAgreement'],
  [/^bad KEM key type/, 'BadKEMKeyType'],
  [/^unexpected KEM key type/, 'WrongKEMKeyType'],
  [/^bad KEM key length/, 'BadKEMKeyLength'],
  [/^bad KEM ciphertext length/, 'BadKEMCiphertextLength'],
  [/^invalid MAC key length/, 'InvalidMacKeyLength'],
  [/^invalid argument: /, 'InvalidArgument'],
  [/^invalid state for call/, 'InvalidState'],
  [/^error in method call/, 'ApplicationCallbackError'],
  [/^fingerprint version number mismatch/, 'FingerprintVersionMismatch'],
  [/^fingerprint parsing error/, 'FingerprintParsingError'],
  [/^Invalid fingerprint iterations/, 'FingerprintInvalidIterations'],
];

function describeError(e) {
  if (e instanceof S.LibSignalErrorBase) {
    const code = e.code;
    // Not e.name: some errors (InvalidProtocolAddress) carry a `name` property of their own.
    const codeName = S.ErrorCode[code] ?? 'Generic';
    let kind = codeName;
    if (code === S.ErrorCode.Generic) {
      kind = 'Generic';
      for (const [re, k] of GENERIC_KINDS) {
        if (re.test(e.message)) {
          kind = k;
          break;
        }
      }
    }
    return {
      error: `${codeName} (code ${code}) in ${e.operation}: ${e.message}`,
      code,
      codeName,
      kind,
      operation: e.operation,
    };
  }
  const kind = e instanceof BadRequest ? 'BadRequest' : 'HarnessError';
  const name = e && e.name ? e.name : 'Error';
  const message = e && e.message !== undefined ? e.message : String(e);
  return { error: `${name}: ${message}`, code: -1, codeName: name, kind, operation: '' };
}

async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return { id: null, ok: false, ...describeError(new BadRequest(`request is not JSON: ${e.message}`)) };
  }
  const id = req !== null && typeof req === 'object' && 'id' in req ? req.id : null;
  try {
    if (req === null || typeof req !== 'object' || typeof req.method !== 'string') {
      throw new BadRequest('request needs a string "method"');
    }
    if (!Object.hasOwn(commands, req.method)) {
      return { id, ok: false, error: `unknown command ${JSON.stringify(req.method)}`, code: -1, codeName: 'Error', kind: 'UnknownCommand', operation: '' };
    }
    const params = req.params === undefined || req.params === null ? {} : req.params;
    if (typeof params !== 'object') throw new BadRequest('params must be an object');
    const result = await commands[req.method](params);
    return { id, ok: true, result };
  } catch (e) {
    return { id, ok: false, ...describeError(e) };
  }
}

// Requests are handled one at a time, in order, so the stores see a sequential history.
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
let queue = Promise.resolve();
rl.on('line', (line) => {
  if (line.trim() === '') return;
  queue = queue.then(async () => {
    const resp = await handle(line);
    process.stdout.write(`${JSON.stringify(resp)}\n`);
  });
});
rl.on('close', () => {
  queue.then(() => process.exit(0));
});
process.on('unhandledRejection', (e) => {
  process.stderr.write(`harness: unhandled rejection: ${e && e.stack ? e.stack : e}\n`);
});
