/// The rows of a result, copied out of libpq (the `PGresult` is already cleared).
public struct PGRows: Sendable, Sequence {
    public let columns: [String]
    /// Row-major cells; nil is SQL NULL.
    let cells: [String?]
    /// Rows affected, for INSERT/UPDATE/DELETE/COPY (`PQcmdTuples`), else 0.
    public let affected: Int

    init(columns: [String], cells: [String?], affected: Int) {
        self.columns = columns
        self.cells = cells
        self.affected = affected
    }

    public var count: Int { columns.isEmpty ? 0 : cells.count / columns.count }
    public var isEmpty: Bool { count == 0 }
    public var first: PGRow? { isEmpty ? nil : PGRow(rows: self, index: 0) }
    public subscript(i: Int) -> PGRow { PGRow(rows: self, index: i) }

    public func makeIterator() -> AnyIterator<PGRow> {
        var i = 0
        let n = count
        return AnyIterator {
            guard i < n else { return nil }
            defer { i += 1 }
            return PGRow(rows: self, index: i)
        }
    }

    func columnIndex(_ name: String) -> Int? { columns.firstIndex(of: name) }
}

/// One row of a `PGRows`: decode columns by position or by name.
public struct PGRow: Sendable {
    let rows: PGRows
    let index: Int

    /// The raw text of a column, nil for NULL.
    public func text(_ column: Int) -> String? { rows.cells[index * rows.columns.count + column] }

    public func decode<T: PGDecodable>(_ column: Int, as type: T.Type = T.self) throws -> T {
        guard column < rows.columns.count else {
            throw PGError(.decoding, "column \(column) out of range (\(rows.columns.count) columns)")
        }
        guard let t = text(column) else {
            throw PGError(.decoding, "column \(rows.columns[column]) is NULL, expected \(T.self)")
        }
        return try T(pgText: t)
    }

    public func decode<T: PGDecodable>(_ column: Int, as type: T?.Type = T?.self) throws -> T? {
        guard column < rows.columns.count else {
            throw PGError(.decoding, "column \(column) out of range (\(rows.columns.count) columns)")
        }
        return try text(column).map { try T(pgText: $0) }
    }

    public func decode<T: PGDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        guard let c = rows.columnIndex(name) else { throw PGError(.decoding, "no column named \(name)") }
        return try decode(c, as: T.self)
    }

    public func decode<T: PGDecodable>(_ name: String, as type: T?.Type = T?.self) throws -> T? {
        guard let c = rows.columnIndex(name) else { throw PGError(.decoding, "no column named \(name)") }
        return try decode(c, as: T?.self)
    }
}
