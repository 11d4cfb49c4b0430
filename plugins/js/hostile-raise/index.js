// Hostile: passes records through unchanged, but throws an ordinary Error
// (naming the record's value) when the value contains `boom`. The SDK turns
// the exception into a rejection of that record only: the instance keeps
// running and the neighbours are forwarded.

export default function hostileRaise(record, out) {
  const value = record.valueText ?? '';
  if (value.includes('boom')) throw new Error(`hostile-raise: cannot handle ${JSON.stringify(value)}`);
  out.forward(record);
}
