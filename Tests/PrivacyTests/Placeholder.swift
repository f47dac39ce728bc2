import XCTest

final class PrivacyPlaceholder: XCTestCase {}
