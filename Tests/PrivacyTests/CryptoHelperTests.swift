import XCTest

@testable import Privacy

final class CryptoHelperTests: XCTestCase {
    func testSHA256KnownAnswers() {
        // FIPS 180-2 appendix B.1 and the empty message.
        XCTAssertEqual(hexEncode(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hexEncode(sha256([])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testHMACSHA256RFC4231() {
        // RFC 4231 test case 2: key "Jefe".
        XCTAssertEqual(
            hexEncode(hmacSHA256(key: Array("Jefe".utf8), message: "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // RFC 4231 test case 1: 20 bytes of 0x0b.
        XCTAssertEqual(
            hexEncode(hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        // RFC 4231 test case 6: a 131-byte key (longer than the block, so it is hashed first).
        XCTAssertEqual(
            hexEncode(
                hmacSHA256(
                    key: [UInt8](repeating: 0xaa, count: 131),
                    message: "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        XCTAssertEqual(hmacSHA256(key: [], message: []).count, 32)
    }

    func testConstantTimeEquals() {
        let mac = hmacSHA256(key: [1, 2, 3], message: "body")
        XCTAssertTrue(constantTimeEquals(mac, mac))
        var altered = mac
        altered[31] ^= 1
        XCTAssertFalse(constantTimeEquals(mac, altered))
        altered = mac
        altered[0] ^= 0x80
        XCTAssertFalse(constantTimeEquals(mac, altered))
        XCTAssertFalse(constantTimeEquals(mac, Array(mac.dropLast())))
        XCTAssertTrue(constantTimeEquals([], []))
        XCTAssertFalse(constantTimeEquals([], [0]))
    }

    func testHexRoundTrip() {
        XCTAssertEqual(hexEncode([0x00, 0x0f, 0xa0, 0xff]), "000fa0ff")
        XCTAssertEqual(hexDecode("000FA0ff"), [0x00, 0x0f, 0xa0, 0xff])
        XCTAssertEqual(hexDecode(""), [])
        XCTAssertNil(hexDecode("abc"))
        XCTAssertNil(hexDecode("zz"))
        XCTAssertNil(hexDecode("0g"))
        let bytes = (0...255).map(UInt8.init)
        XCTAssertEqual(hexDecode(hexEncode(bytes)), bytes)
    }

    func testSecureRandomBytes() throws {
        XCTAssertEqual(try secureRandomBytes(0), [])
        let first = try secureRandomBytes(32)
        let second = try secureRandomBytes(32)
        XCTAssertEqual(first.count, 32)
        XCTAssertNotEqual(first, second)
        XCTAssertNotEqual(first, [UInt8](repeating: 0, count: 32))
    }
}
