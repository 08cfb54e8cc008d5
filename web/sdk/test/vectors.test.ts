// Byte compatibility: every frame of proto-spec/vectors.json, decoded and
// encoded by the SDK's codec, byte for byte.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { decodeFrame, encodeFrame } from "../src/codec.js";

interface Vector {
  name: string;
  direction: "client_to_server" | "server_to_client";
  hex: string;
  decoded?: Record<string, unknown>;
  canonical_hex?: string;
  error?: string;
}

const file = new URL("../../../proto-spec/vectors.json", import.meta.url);
const vectors = (JSON.parse(readFileSync(file, "utf8")) as { vectors: Vector[] }).vectors;
const valid = vectors.filter((v) => !v.error);
const payload = (hex: string) => Buffer.from(hex, "hex").subarray(4);
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("proto-spec/vectors.json", () => {
  it("has vectors in both directions", () => {
    expect(valid.filter((v) => v.direction === "server_to_client").length).toBeGreaterThan(40);
    expect(valid.filter((v) => v.direction === "client_to_server").length).toBeGreaterThan(40);
  });

  for (const v of valid) {
    it(`decodes ${v.name}`, () => {
      const bytes = payload(v.hex);
      expect(Buffer.from(v.hex, "hex").readUInt32BE(0)).toBe(bytes.length);
      expect(decodeFrame(bytes)).toEqual(v.decoded);
    });
  }

  for (const v of valid.filter((v) => v.direction === "client_to_server")) {
    it(`encodes ${v.name} byte for byte`, () => {
      const expected = (v.canonical_hex ?? v.hex).slice(8);
      expect(toHex(encodeFrame(v.decoded!))).toBe(expected);
    });
  }

  it("refuses frames that are not maps with a string t", () => {
    expect(() => decodeFrame(new Uint8Array([0x91, 0x01]))).toThrow();
    expect(() => decodeFrame(new Uint8Array([0x81, 0xa1, 0x78, 0x01]))).toThrow();
  });
});
