import Foundation
import XCTest

@testable import Privacy

func hex(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
    guard let bytes = hexDecode(text) else {
        XCTFail("bad hex in test: \(text)", file: file, line: line)
        return []
    }
    return bytes
}

/// A fresh random 32-byte key per call, so tests never share key material.
func randomKey() -> [UInt8] {
    try! secureRandomBytes(32)
}

func base64(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString()
}

/// Asserts that `text` contains none of the given secrets, whether as text, base64 or hex.
func assertNoSecrets(
    _ text: String, plaintexts: [String] = [], keys: [[UInt8]] = [], file: StaticString = #filePath,
    line: UInt = #line
) {
    for plaintext in plaintexts where !plaintext.isEmpty {
        XCTAssertFalse(text.contains(plaintext), "leaks a plaintext: \(text)", file: file, line: line)
    }
    for key in keys {
        XCTAssertFalse(text.contains(base64(key)), "leaks a key (base64): \(text)", file: file, line: line)
        XCTAssertFalse(text.lowercased().contains(hexEncode(key)), "leaks a key (hex): \(text)", file: file, line: line)
        XCTAssertFalse(text.contains(String(describing: key)), "leaks a key (array): \(text)", file: file, line: line)
    }
}
