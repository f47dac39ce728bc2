import XCTest

final class RuntimePlaceholder: XCTestCase {}
