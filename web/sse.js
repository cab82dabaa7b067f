// sse.js - a Server-Sent Events parser for a fetch() body: feed it text as
// it arrives, get back whole events ({event, data}) as they complete.
export class SseParser {
  constructor() {
    this.buf = '';
    this.cr = '';
  }

  // Returns the events completed by text (possibly none).
  push(text) {
    // A CR at the end of a piece may be half of a CRLF: keep it for the next.
    text = this.cr + text;
    this.cr = text.endsWith('\r') ? '\r' : '';
    if (this.cr) text = text.slice(0, -1);
    this.buf += text.replace(/\r\n?/g, '\n');
    const out = [];
    let end;
    while ((end = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) out.push({ event, data: data.join('\n') });
    }
    return out;
  }
}

// Reads an SSE response body, calling onEvent(name, parsedJson) per event.
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const ev of parser.push(value)) {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        data = { raw: ev.data };
      }
      onEvent(ev.event, data);
    }
  }
}
