// Hostile: passes records through unchanged, but allocates without bound
// when the value contains `boom`. The host's memory limit ends the call; the
// host isolates the record and the others go through.

const hoard = [];

export default function hostileMemory(record, out) {
  if ((record.valueText ?? '').includes('boom')) for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
  out.forward(record);
}
