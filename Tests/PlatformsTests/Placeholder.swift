import XCTest

final class PlatformsPlaceholder: XCTestCase {}
