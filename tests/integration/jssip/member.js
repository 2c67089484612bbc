// JsSIP 3.13 (the browser SIP library) as a group member over ws/wss, driven by JSON lines.
//
//   node --experimental-websocket member.js <ws url> <aor> [display name]
//
// Commands on stdin: {"cmd": "dial", "uri": ...}, {"cmd": "message", "uri": ..., "text": ...},
// {"cmd": "hangup"}, {"cmd": "quit"}. Events on stdout: ready, call (state), message (from,
// body), sent (a MESSAGE's outcome), error. Node has no WebRTC: a stand-in
// RTCPeerConnection hands JsSIP a fixed audio offer and takes the answer, so everything
// on the wire (WebSocket, SIP, SDP offer/answer) is JsSIP's own. Trust a test CA for
// wss with NODE_EXTRA_CA_CERTS.
'use strict';

const readline = require('readline');
const JsSIP = require('jssip');

const SDP = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', '',
].join('\r\n');

class StandInPeerConnection extends EventTarget {
  constructor() {
    super();
    this.iceGatheringState = 'complete';
    this.iceConnectionState = 'new';
    this.signalingState = 'stable';
    this.localDescription = null;
    this.remoteDescription = null;
  }
  createOffer() { return Promise.resolve({ type: 'offer', sdp: SDP }); }
  createAnswer() { return Promise.resolve({ type: 'answer', sdp: SDP }); }
  setLocalDescription(d) { this.localDescription = d; return Promise.resolve(); }
  setRemoteDescription(d) { this.remoteDescription = d; return Promise.resolve(); }
  addTrack() {}
  getSenders() { return []; }
  getReceivers() { return []; }
  close() {}
}
global.RTCPeerConnection = StandInPeerConnection;
global.RTCSessionDescription = class { constructor(init) { Object.assign(this, init); } };
global.window = global; // JsSIP looks for window.RTCPeerConnection

const [url, aor, display] = process.argv.slice(2);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(url)],
  uri: aor,
  display_name: display || undefined,
  register: false,
});
let session = null;

ua.on('connected', () => emit('ready'));
ua.on('disconnected', () => emit('disconnected'));
ua.on('newMessage', (e) => {
  if (e.originator === 'remote') {
    emit('message', { from: e.request.from.uri.toString(), body: e.request.body });
  }
});

function dial(uri) {
  session = ua.call(uri, {
    mediaConstraints: { audio: false, video: false },
    eventHandlers: {
      progress: () => emit('call', { state: 'early' }),
      confirmed: () => emit('call', { state: 'confirmed' }),
      failed: (e) => emit('call', { state: 'disconnected', cause: e.cause,
        status: e.message && e.message.status_code,
        contact: (e.message && e.message.getHeader && e.message.getHeader('Contact')) || null }),
      ended: (e) => emit('call', { state: 'disconnected', cause: e.cause }),
    },
  });
}

function message(uri, text) {
  ua.sendMessage(uri, text, {
    eventHandlers: {
      succeeded: () => emit('sent', { ok: true }),
      failed: (e) => emit('sent', { ok: false, cause: e.cause }),
    },
  });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  try {
    if (command.cmd === 'dial') dial(command.uri);
    else if (command.cmd === 'message') message(command.uri, command.text);
    else if (command.cmd === 'hangup' && session) session.terminate();
    else if (command.cmd === 'quit') { ua.stop(); setTimeout(() => process.exit(0), 500); }
  } catch (error) {
    emit('error', { cmd: command.cmd, reason: String(error) });
  }
});
ua.start();
