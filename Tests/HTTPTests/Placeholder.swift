import XCTest

final class HTTPPlaceholder: XCTestCase {}
