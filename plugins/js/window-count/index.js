// Counts records per key in windows computed by the host.
//
// Config: `window` = `tumbling` | `hopping` | `sliding` | `session` |
// `count-tumbling` | `count-hopping`, `size_ms` (tumbling, hopping,
// sliding), `advance_ms` (hopping), `gap_ms` (session), `count` and `step`
// (count windows), `grace_ms` (default 0), `emit` = `final` (default) | `update`,
// and optionally `idle_close_ms`. Each result becomes a record keyed by the
// record key with value `{"start": S, "end": E, "count": N}`; `end` is
// exclusive for tumbling and hopping windows and the inclusive last instant
// for sliding and session windows, as Kafka Streams reports them. In
// update mode a session merged into another is reported with count 0.

import { WindowSpec } from 'weir';

function spec(config) {
  const ms = (key) => {
    const v = config.u64(key);
    if (v === undefined) throw new Error(`config \`${key}\` is required for this window`);
    return v;
  };
  let spec;
  const kind = config.require('window');
  switch (kind) {
    case 'tumbling':
      spec = WindowSpec.tumbling(ms('size_ms'));
      break;
    case 'hopping':
      spec = WindowSpec.hopping(ms('size_ms'), ms('advance_ms'));
      break;
    case 'sliding':
      spec = WindowSpec.sliding(ms('size_ms'));
      break;
    case 'session':
      spec = WindowSpec.session(ms('gap_ms'));
      break;
    case 'count-tumbling':
      spec = WindowSpec.countTumbling(ms('count'));
      break;
    case 'count-hopping':
      spec = WindowSpec.countHopping(ms('count'), ms('step'));
      break;
    default:
      throw new Error(`config \`window\` = \`${kind}\`: expected tumbling, hopping, sliding, session, count-tumbling or count-hopping`);
  }
  spec = spec.graceMs(config.u64('grace_ms', 0)).count();
  const emit = config.get('emit') ?? 'final';
  if (emit === 'final') spec = spec.emitOnClose();
  else if (emit === 'update') spec = spec.emitOnUpdate();
  else throw new Error(`config \`emit\` = \`${emit}\`: expected final or update`);
  const idle = config.u64('idle_close_ms');
  return idle === undefined ? spec : spec.idleCloseMs(idle);
}

export default class WindowCount {
  constructor(config) {
    this.window = spec(config).define('count');
  }

  process(record, out) {
    out.addToWindow(this.window, record.key ?? '', 1);
  }

  onWindow(w, out) {
    out.emit({ key: w.key, value: `{"start":${w.start},"end":${w.end},"count":${w.count}}` });
  }
}
