/**
 * Exact JSON for money. creditsd writes amounts as exact decimal JSON numbers
 * (`922337203685477.5807`), which `JSON.parse` rounds to the nearest double. This module
 * reads the same text with every number kept as its decimal string, and writes bodies whose
 * amounts go out exactly as the caller wrote them (a decimal string becomes a JSON number
 * literal, never passing through a float).
 */

/** A value with every JSON number written as its decimal string, exactly as it was sent. */
export type Exact<T> = T extends number
  ? string
  : T extends readonly (infer Item)[]
    ? Exact<Item>[]
    : T extends object
      ? { [Key in keyof T]: Exact<T[Key]> }
      : T;

/** A JSON number literal to send as written (the output of {@link decimalLiteral}). */
export class JsonNumber {
  constructor(readonly literal: string) {}
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;

/** Parse JSON text keeping every number as its decimal string; throws SyntaxError. */
export function parseExact(text: string): unknown {
  let at = 0;
  const fail = (): never => {
    throw new SyntaxError(`invalid JSON at position ${at}`);
  };
  const space = (): void => {
    while (at < text.length && " \t\n\r".includes(text.charAt(at))) at += 1;
  };
  const match = (pattern: RegExp): string | undefined => {
    pattern.lastIndex = at;
    const found = pattern.exec(text);
    if (found === null) return undefined;
    at = pattern.lastIndex;
    return found[0];
  };
  const value = (): unknown => {
    space();
    const char = text.charAt(at);
    if (char === "{") {
      at += 1;
      const object: Record<string, unknown> = {};
      space();
      if (text.charAt(at) === "}") {
        at += 1;
        return object;
      }
      for (;;) {
        space();
        const key = match(STRING) ?? fail();
        space();
        if (text.charAt(at) !== ":") fail();
        at += 1;
        Object.defineProperty(object, JSON.parse(key) as string, {
          value: value(),
          enumerable: true,
          writable: true,
          configurable: true,
        });
        space();
        const next = text.charAt(at);
        at += 1;
        if (next === "}") return object;
        if (next !== ",") fail();
      }
    }
    if (char === "[") {
      at += 1;
      const array: unknown[] = [];
      space();
      if (text.charAt(at) === "]") {
        at += 1;
        return array;
      }
      for (;;) {
        array.push(value());
        space();
        const next = text.charAt(at);
        at += 1;
        if (next === "]") return array;
        if (next !== ",") fail();
      }
    }
    if (char === '"') return JSON.parse(match(STRING) ?? fail()) as string;
    for (const [word, meaning] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return meaning;
      }
    }
    return match(NUMBER) ?? fail();
  };
  const result = value();
  space();
  if (at !== text.length) fail();
  return result;
}

/** JSON text for a request body: `JsonNumber`s as their literals, non-finite numbers refused. */
export function stringifyExact(value: unknown, path = "body"): string {
  if (value === null) return "null";
  if (value instanceof JsonNumber) return value.literal;
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) {
        throw new RangeError(`${path} is ${value}, which JSON cannot carry; send a finite number`);
      }
      return JSON.stringify(value);
    case "object": {
      if (value instanceof Date) return JSON.stringify(value.toISOString());
      if (Array.isArray(value)) {
        return `[${value.map((item, index) => stringifyExact(item, `${path}[${index}]`)).join(",")}]`;
      }
      const fields = Object.entries(value as Record<string, unknown>)
        .filter(([, item]) => item !== undefined)
        .map(([key, item]) => `${JSON.stringify(key)}:${stringifyExact(item, `${path}.${key}`)}`);
      return `{${fields.join(",")}}`;
    }
    default:
      throw new TypeError(`${path} is a ${typeof value}, which JSON cannot carry`);
  }
}

const DECIMAL = /^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$/;

/**
 * An amount of credits from a caller, checked and kept exact: a finite number of 0 or more,
 * a bigint, or a plain decimal string (`"10"`, `"10.5"`). NaN, Infinity, negatives, booleans and other
 * strings are refused here, before anything is sent. Zero and more decimals than the ledger
 * keeps are the server's to refuse (422), as only it knows its scale.
 */
export function decimalLiteral(value: unknown, name = "amount"): JsonNumber {
  if (typeof value === "number") {
    if (Number.isNaN(value)) throw new RangeError(`${name} is NaN; give a number of credits`);
    if (!Number.isFinite(value)) {
      throw new RangeError(`${name} is ${value}; give a finite number of credits`);
    }
    if (value < 0) {
      throw new RangeError(`${name} is ${value}; amounts are 0 or more`);
    }
    return new JsonNumber(JSON.stringify(value));
  }
  if (typeof value === "bigint") {
    if (value < 0n) throw new RangeError(`${name} is ${value}; amounts are 0 or more`);
    return new JsonNumber(value.toString());
  }
  if (typeof value === "string") {
    if (!DECIMAL.test(value)) {
      throw new RangeError(
        `${name} ${JSON.stringify(value)} is not a plain decimal such as "10" or "10.5"`,
      );
    }
    return new JsonNumber(value);
  }
  throw new TypeError(
    `${name} is a number, a bigint or a decimal string such as "10.5", not ${describe(value)}`,
  );
}

/** How a value reads in an error message. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value)}`;
}
