import XCTest

@testable import Privacy

/// Test vectors from McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)" (the GCM submission to
/// NIST), test cases 13-16, the AES-256 ones. They prove the EVP calls (key, IV length, AAD, tag) are right.
final class AESGCMKnownAnswerTests: XCTestCase {
    private let key16 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
    private let nonce16 = "cafebabefacedbaddecaf888"

    private func check(
        key: String, nonce: String, plaintext: String, aad: String, ciphertext: String, tag: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let sealed = try AESGCM.seal(key: hex(key), nonce: hex(nonce), plaintext: hex(plaintext), aad: hex(aad))
        XCTAssertEqual(hexEncode(sealed.ciphertext), ciphertext, file: file, line: line)
        XCTAssertEqual(hexEncode(sealed.tag), tag, file: file, line: line)
        let opened = try AESGCM.open(
            key: hex(key), nonce: hex(nonce), ciphertext: hex(ciphertext), tag: hex(tag), aad: hex(aad))
        XCTAssertEqual(hexEncode(opened), plaintext, file: file, line: line)
    }

    func testCase13EmptyPlaintext() throws {
        try check(
            key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12), plaintext: "",
            aad: "", ciphertext: "", tag: "530f8afbc74536b9a963b4f1c4cb738b")
    }

    func testCase14OneZeroBlock() throws {
        try check(
            key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
            plaintext: String(repeating: "00", count: 16), aad: "",
            ciphertext: "cea7403d4d606b6e074ec5d3baf39d18", tag: "d0d1c8a799996bf0265b98b5d48ab919")
    }

    func testCase15FourBlocks() throws {
        try check(
            key: key16, nonce: nonce16,
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                + "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            aad: "",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                + "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            tag: "b094dac5d93471bdec1a502270e3cc6c")
    }

    func testCase16WithAssociatedData() throws {
        try check(
            key: key16, nonce: nonce16,
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                + "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                + "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b")
    }

    func testOpenRejectsAWrongTagOrAAD() throws {
        let key = hex(key16)
        let nonce = hex(nonce16)
        let sealed = try AESGCM.seal(key: key, nonce: nonce, plaintext: Array("secret".utf8), aad: [1, 2])
        var tag = sealed.tag
        tag[15] ^= 1
        XCTAssertThrowsError(
            try AESGCM.open(key: key, nonce: nonce, ciphertext: sealed.ciphertext, tag: tag, aad: [1, 2])
        ) {
            XCTAssertEqual($0 as? AESGCM.Failure, .authentication)
        }
        XCTAssertThrowsError(
            try AESGCM.open(key: key, nonce: nonce, ciphertext: sealed.ciphertext, tag: sealed.tag, aad: [1, 3])
        ) {
            XCTAssertEqual($0 as? AESGCM.Failure, .authentication)
        }
        XCTAssertEqual(
            try AESGCM.open(key: key, nonce: nonce, ciphertext: sealed.ciphertext, tag: sealed.tag, aad: [1, 2]),
            Array("secret".utf8))
    }
}
