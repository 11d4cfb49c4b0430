// Stateless map: forwards every record with its value upper-cased (ASCII),
// keeping key, headers and timestamp.

import { asciiUpperCase } from 'weir';

export default function upper(record, out) {
  const value = record.value;
  out.forward(record, { value: value === null ? null : asciiUpperCase(value) });
}
