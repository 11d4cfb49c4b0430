// Hostile: passes records through unchanged, but loops forever when the
// value contains `boom`. The host's CPU time limit ends the call; the host
// isolates the record and the others go through.

export default function hostileLoop(record, out) {
  if ((record.valueText ?? '').includes('boom')) for (;;);
  out.forward(record);
}
