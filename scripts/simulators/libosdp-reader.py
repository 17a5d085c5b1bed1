"""
An OSDP reader (PD) run by LibOSDP, the C reference implementation, through its Python binding
(`pip install libosdp`): an independent peer to check the adapter's wire format against.

    python libosdp-reader.py <pty path> <PD address> [<SCBK hex>]

Without an SCBK the reader starts in install mode. It prints one JSON object per line on stdout:
{"event": "ready"} once it listens, then {"event": "keyset", "scbk": hex} and
{"event": "comset", "address": n, "baudRate": n} as the control panel configures it. The key is
printed on purpose: this is a test peer, and the test checks it against the sealed one.
"""
import errno
import json
import os
import signal
import sys
import threading
import tty

from osdp import Capability, Channel, LibFlag, LogLevel, PDCapabilities, PDInfo, PdId, PeripheralDevice

path, address = sys.argv[1], int(sys.argv[2], 0)
scbk = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else None

fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
tty.setraw(fd)


class PtyChannel(Channel):
    def read(self, max_bytes):
        try:
            return os.read(fd, max_bytes)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return b''
            raise

    def write(self, buf):
        return os.write(fd, bytes(buf))

    def flush(self):
        pass


def report(event, **fields):
    print(json.dumps({'event': event, **fields}), flush=True)


def on_command(command):
    if command.get('command') == 5:
        report('keyset', scbk=bytes(command['data']).hex())
    elif command.get('command') == 6:
        report('comset', address=command['address'], baudRate=command['baud_rate'])
    return 0, None


info = PDInfo(
    address,
    PtyChannel(),
    scbk=scbk,
    flags=[] if scbk else [LibFlag.InstallMode],
    id=PdId(version=2, model=5, vendor_code=0x00068E, serial_number=0x12345678, firmware_version=0x010203),
)
capabilities = PDCapabilities([
    (Capability.CommunicationSecurity, 1, 1),
    (Capability.CheckCharacter, 1, 0),
    (Capability.LEDControl, 1, 1),
    (Capability.Readers, 1, 1),
])
reader = PeripheralDevice(info, capabilities, log_level=LogLevel.Warning, command_handler=on_command)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
reader.start()
report('ready')
stop.wait()
reader.stop()
